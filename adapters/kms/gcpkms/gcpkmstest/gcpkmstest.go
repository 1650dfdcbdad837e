// Package gcpkmstest holds test fakes of the two Google services the Cloud
// KMS port (adapters/kms/gcpkms) talks to, listening on loopback: a Security
// Token Service (HTTP) that checks the token-exchange request (audience,
// subject token type, the subject token itself) and issues short-lived
// access tokens, and a Cloud KMS (a gRPC server implementing the generated
// kmspb.KeyManagementServiceServer) that checks the bearer token against
// the STS's live tokens and the key name against the keys it was given,
// seals with AES-256-GCM per key name, verifies and returns CRC32C
// checksums, and can be made to refuse, fail or corrupt a checksum.
package gcpkmstest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Token exchange constants the fake checks (RFC 8693, as Google's STS).
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// STS is a fake Security Token Service.
type STS struct {
	// URL is the token endpoint (http://127.0.0.1:PORT/v1/token).
	URL string

	srv          *httptest.Server
	subjectToken string

	mu        sync.Mutex
	audiences map[string]bool
	ttl       time.Duration
	fail      int    // HTTP status to refuse with; 0 = serve
	failMsg   string // error_description of a refusal
	tokens    map[string]time.Time
	issued    int
	refused   int
	errs      []string // requests that broke the protocol
}

// NewSTS starts a fake STS that accepts the given audience (and those of
// AllowAudience) and exactly the given subject token, issuing tokens valid
// for ttl (at least 1 s: expires_in has whole seconds). It is closed at t's
// cleanup.
func NewSTS(t testing.TB, audience, subjectToken string, ttl time.Duration) *STS {
	t.Helper()
	s := &STS{audiences: map[string]bool{audience: true}, subjectToken: subjectToken, ttl: max(ttl, time.Second), tokens: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/token", s.handle)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/v1/token"
	t.Cleanup(s.srv.Close)
	return s
}

// AllowAudience accepts one more audience (another provider path).
func (s *STS) AllowAudience(audience string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audiences[audience] = true
}

// Refuse makes every following exchange fail with HTTP status code (0
// serves again), with Google's error shape.
func (s *STS) Refuse(code int, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.failMsg = code, description
}

// SetTTL changes the lifetime of the tokens issued from now on.
func (s *STS) SetTTL(ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = max(ttl, time.Second)
}

// Issued returns how many access tokens were issued.
func (s *STS) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// Refused returns how many exchanges were refused.
func (s *STS) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Errors returns the protocol violations seen (wrong method, audience,
// token type, subject token, …), which a test should expect empty unless it
// provoked them.
func (s *STS) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

// Valid reports whether token is an access token this STS issued and that
// has not expired.
func (s *STS) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	return ok && time.Now().Before(exp)
}

// Tokens returns every access token issued (to check that none leaks).
func (s *STS) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for tok := range s.tokens {
		out = append(out, tok)
	}
	return out
}

func (s *STS) handle(w http.ResponseWriter, r *http.Request) {
	refuse := func(code int, kind, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": kind, "error_description": desc})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.errs = append(s.errs, msg)
		s.refused++
		refuse(http.StatusBadRequest, "invalid_request", msg)
	}
	if r.Method != http.MethodPost {
		bad("method %s, want POST", r.Method)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		bad("content type %q, want a form", ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		bad("unparsable form: %v", err)
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != GrantTypeTokenExchange:
		bad("grant_type %q", f.Get("grant_type"))
		return
	case f.Get("subject_token_type") != TokenTypeJWT:
		bad("subject_token_type %q, want %s", f.Get("subject_token_type"), TokenTypeJWT)
		return
	case f.Get("requested_token_type") != TokenTypeAccessToken:
		bad("requested_token_type %q", f.Get("requested_token_type"))
		return
	case !s.audiences[f.Get("audience")]:
		// Google answers an unknown provider with 400 invalid_target.
		s.errs = append(s.errs, fmt.Sprintf("unknown audience %q", f.Get("audience")))
		s.refused++
		refuse(http.StatusBadRequest, "invalid_target", fmt.Sprintf("The target service indicated by the \"audience\" parameter %q is invalid.", f.Get("audience")))
		return
	case !strings.Contains(" "+f.Get("scope")+" ", " https://www.googleapis.com/auth/cloud-platform "):
		bad("scope %q lacks cloud-platform", f.Get("scope"))
		return
	case f.Get("subject_token") != s.subjectToken:
		s.refused++
		s.errs = append(s.errs, "subject token is not the attestation token")
		refuse(http.StatusBadRequest, "invalid_grant", "the subject token is not the expected attestation token")
		return
	}
	if s.fail != 0 {
		s.refused++
		refuse(s.fail, "access_denied", s.failMsg)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "ya29.fake-" + hex.EncodeToString(b)
	s.tokens[tok] = time.Now().Add(s.ttl)
	s.issued++
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token":      tok,
		"issued_token_type": TokenTypeAccessToken,
		"token_type":        "Bearer",
		"expires_in":        int(s.ttl / time.Second),
	})
}

// KMS is a fake Cloud KMS, a gRPC server on loopback.
type KMS struct {
	kmspb.UnimplementedKeyManagementServiceServer

	// Addr is the endpoint (127.0.0.1:PORT).
	Addr string

	authorize func(token string) bool
	srv       *grpc.Server

	mu   sync.Mutex
	keys map[string]cipher.AEAD // by crypto key name

	// Fault injection, read on every call.
	failCode          atomic.Uint32          // codes.Code to fail every call with; 0 = none
	failNext          atomic.Int32           // fail the next n calls with Unavailable
	corruptChecksum   atomic.Bool            // return a wrong ciphertext/plaintext CRC32C
	corruptNext       atomic.Int32           // corrupt the next n replies' CRC32C
	skipVerify        atomic.Bool            // answer verified_plaintext_crc32c = false
	replyName         atomic.Pointer[string] // Encrypt replies name this key version
	calls             atomic.Int64           // Encrypt and Decrypt calls that reached the key
	encrypts, decrypt atomic.Int64
	unauthenticated   atomic.Int64

	plainMu sync.Mutex
	onPlain func(name string, plain []byte) // sees each Encrypt plaintext
}

// NewKMS starts a fake Cloud KMS whose calls need a bearer token for which
// authorize returns true (use STS.Valid). It is stopped at t's cleanup.
func NewKMS(t testing.TB, authorize func(token string) bool) *KMS {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gcpkmstest: listen: %v", err)
	}
	k := &KMS{Addr: l.Addr().String(), authorize: authorize, keys: map[string]cipher.AEAD{}, srv: grpc.NewServer()}
	kmspb.RegisterKeyManagementServiceServer(k.srv, k)
	go func() { _ = k.srv.Serve(l) }()
	t.Cleanup(k.srv.Stop)
	return k
}

// AddKey creates the symmetric key name (a cryptoKeys/… resource name) with
// random key material; calls on other names are refused with
// PermissionDenied, as Cloud KMS answers for a key that does not exist or
// that the caller may not use.
func (k *KMS) AddKey(name string) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[name] = aead
}

// RemoveKey revokes access to name.
func (k *KMS) RemoveKey(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, name)
}

// Fail makes every call fail with code (codes.OK serves again).
func (k *KMS) Fail(code codes.Code) { k.failCode.Store(uint32(code)) }

// FailNext makes the next n calls fail with Unavailable (a transient error
// the client retries).
func (k *KMS) FailNext(n int) { k.failNext.Store(int32(n)) }

// CorruptChecksums makes replies carry a wrong CRC32C (on) or correct ones.
func (k *KMS) CorruptChecksums(on bool) { k.corruptChecksum.Store(on) }

// CorruptNext makes the next n replies carry a wrong CRC32C (corruption on
// the way, which a client discards and retries).
func (k *KMS) CorruptNext(n int) { k.corruptNext.Store(int32(n)) }

// ReplyName makes Encrypt replies name the key version name instead of
// the one used ("" answers truthfully again).
func (k *KMS) ReplyName(name string) {
	if name == "" {
		k.replyName.Store(nil)
		return
	}
	k.replyName.Store(&name)
}

// Calls returns how many Encrypt and Decrypt calls were answered (with
// data or an error of the key), retries included.
func (k *KMS) Calls() int64 { return k.calls.Load() }

// corrupt reports whether this reply's checksum is to be wrong.
func (k *KMS) corrupt() bool {
	if k.corruptChecksum.Load() {
		return true
	}
	for {
		n := k.corruptNext.Load()
		if n <= 0 {
			return false
		}
		if k.corruptNext.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// SkipVerify makes Encrypt replies claim the plaintext checksum was not
// verified (on).
func (k *KMS) SkipVerify(on bool) { k.skipVerify.Store(on) }

// OnPlaintext sets a function that sees every plaintext an Encrypt carries
// (golden-vector tests); nil removes it.
func (k *KMS) OnPlaintext(f func(name string, plain []byte)) {
	k.plainMu.Lock()
	defer k.plainMu.Unlock()
	k.onPlain = f
}

// Counts returns how many Encrypt and Decrypt calls succeeded, and how many
// calls were refused for their credentials.
func (k *KMS) Counts() (encrypts, decrypts, unauthenticated int64) {
	return k.encrypts.Load(), k.decrypt.Load(), k.unauthenticated.Load()
}

// Seal encrypts plain under name as Encrypt does, for tests that need a
// blob made elsewhere (as enclave-signer would have made it).
func (k *KMS) Seal(name string, plain []byte) ([]byte, error) {
	aead, err := k.key(name)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, []byte(name)), nil
}

// Unseal decrypts a blob as Decrypt does, for tests that inspect what was
// sealed.
func (k *KMS) Unseal(name string, blob []byte) ([]byte, error) {
	aead, err := k.key(name)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(blob) < ns+aead.Overhead() {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	plain, err := aead.Open(nil, blob[:ns], blob[ns:], []byte(name))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	return plain, nil
}

func (k *KMS) key(name string) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	aead, ok := k.keys[name]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '%s' (or it may not exist).", name)
	}
	return aead, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// check authenticates the call and applies injected failures.
func (k *KMS) check(ctx context.Context, name string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := md.Get("authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") || !k.authorize(strings.TrimPrefix(auth[0], "Bearer ")) {
		k.unauthenticated.Add(1)
		return status.Error(codes.Unauthenticated, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
	}
	if p := md.Get("x-goog-request-params"); len(p) == 0 || !strings.Contains(p[0], "name=") {
		return status.Error(codes.InvalidArgument, "missing x-goog-request-params routing header")
	}
	if n := k.failNext.Load(); n > 0 && k.failNext.CompareAndSwap(n, n-1) {
		return status.Error(codes.Unavailable, "injected transient failure")
	}
	if code := codes.Code(k.failCode.Load()); code != codes.OK {
		return status.Error(code, "injected failure")
	}
	if !strings.Contains(name, "/cryptoKeys/") {
		return status.Errorf(codes.InvalidArgument, "invalid resource name %q", name)
	}
	return nil
}

// Encrypt implements kmspb.KeyManagementServiceServer.
func (k *KMS) Encrypt(ctx context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	if err := k.check(ctx, req.GetName()); err != nil {
		return nil, err
	}
	k.calls.Add(1)
	verified := false
	if c := req.GetPlaintextCrc32C(); c != nil {
		if c.GetValue() != crc(req.GetPlaintext()) {
			return nil, status.Error(codes.InvalidArgument, "The checksum in field plaintext_crc32c did not match the data in field plaintext.")
		}
		verified = true
	}
	k.plainMu.Lock()
	if k.onPlain != nil {
		k.onPlain(req.GetName(), append([]byte(nil), req.GetPlaintext()...))
	}
	k.plainMu.Unlock()
	blob, err := k.Seal(req.GetName(), req.GetPlaintext())
	if err != nil {
		return nil, err
	}
	sum := crc(blob)
	if k.corrupt() {
		sum ^= 1
	}
	k.encrypts.Add(1)
	name := req.GetName() + "/cryptoKeyVersions/1"
	if n := k.replyName.Load(); n != nil {
		name = *n
	}
	return &kmspb.EncryptResponse{
		Name:                    name,
		Ciphertext:              blob,
		CiphertextCrc32C:        wrapperspb.Int64(sum),
		VerifiedPlaintextCrc32C: verified && !k.skipVerify.Load(),
		ProtectionLevel:         kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

// Decrypt implements kmspb.KeyManagementServiceServer.
func (k *KMS) Decrypt(ctx context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	if err := k.check(ctx, req.GetName()); err != nil {
		return nil, err
	}
	k.calls.Add(1)
	if c := req.GetCiphertextCrc32C(); c != nil && c.GetValue() != crc(req.GetCiphertext()) {
		return nil, status.Error(codes.InvalidArgument, "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.")
	}
	plain, err := k.Unseal(req.GetName(), req.GetCiphertext())
	if err != nil {
		return nil, err
	}
	sum := crc(plain)
	if k.corrupt() {
		sum ^= 1
	}
	k.decrypt.Add(1)
	return &kmspb.DecryptResponse{
		Plaintext:       plain,
		PlaintextCrc32C: wrapperspb.Int64(sum),
		UsedPrimary:     true,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

// WriteTokenFile writes an attestation-token stand-in (a JWT-shaped string)
// to path and returns it.
func WriteTokenFile(t testing.TB, path string) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := "eyJhbGciOiJSUzI1NiJ9.eyJzd25hbWUiOiJDT05GSURFTlRJQUxfU1BBQ0UifQ." + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatalf("gcpkmstest: token file: %v", err)
	}
	return tok
}
