package gcpkms_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms/gcpkmstest"
)

const (
	wip    = "projects/123456789/locations/global/workloadIdentityPools/sigil-pool/providers/sigil-provider"
	keyRes = "projects/sigil-test/locations/us-west1/keyRings/sigil/cryptoKeys/enclave"
)

// fakes is a fake STS and KMS pair wired as production would be.
type fakes struct {
	tokenFile string
	subject   string
	sts       *gcpkmstest.STS
	kms       *gcpkmstest.KMS
}

func newFakes(t *testing.T, ttl time.Duration) *fakes {
	t.Helper()
	f := &fakes{tokenFile: filepath.Join(t.TempDir(), "attestation_verifier_claims_token")}
	f.subject = gcpkmstest.WriteTokenFile(t, f.tokenFile)
	f.sts = gcpkmstest.NewSTS(t, gcpkms.AudiencePrefix+wip, f.subject, ttl)
	f.kms = gcpkmstest.NewKMS(t, f.sts.Valid)
	f.kms.AddKey(keyRes)
	return f
}

func (f *fakes) config() gcpkms.Config {
	return gcpkms.Config{TokenFile: f.tokenFile, TokenURL: f.sts.URL, Endpoint: f.kms.Addr, Insecure: true}
}

func (f *fakes) provider(t *testing.T, mod ...func(*gcpkms.Config)) *gcpkms.Provider {
	t.Helper()
	cfg := f.config()
	for _, m := range mod {
		m(&cfg)
	}
	p, err := gcpkms.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func (f *fakes) session(t *testing.T, p *gcpkms.Provider, key string) *gcpkms.Sealer {
	t.Helper()
	s, err := p.Session(context.Background(), wip, key)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSealOpenRoundTrip(t *testing.T) {
	f := newFakes(t, time.Hour)
	p := f.provider(t)
	s := f.session(t, p, keyRes)
	plain := []byte("\xa1\x67Ed25519\x58\x20 thirty-two bytes of key material")

	blob, err := s.Seal(ctx(t), plain)
	require.NoError(t, err)
	require.False(t, bytes.Contains(blob, plain), "the blob holds the plaintext")
	// The blob is the bare KMS ciphertext: the KMS alone opens it.
	got, err := f.kms.Unseal(keyRes, blob)
	require.NoError(t, err)
	require.Equal(t, plain, got)

	opened, err := s.Open(ctx(t), blob)
	require.NoError(t, err)
	require.Equal(t, plain, opened)

	// A blob sealed by someone else under the same key (enclave-signer)
	// opens too.
	foreign, err := f.kms.Seal(keyRes, plain)
	require.NoError(t, err)
	opened, err = s.Open(ctx(t), foreign)
	require.NoError(t, err)
	require.Equal(t, plain, opened)

	enc, dec, unauth := f.kms.Counts()
	require.Equal(t, [3]int64{1, 2, 0}, [3]int64{enc, dec, unauth})
	require.Equal(t, 1, f.sts.Issued(), "one token exchange serves a session while the token is valid")
	require.Empty(t, f.sts.Errors())

	// A second session on the same provider reuses the client and token.
	s2 := f.session(t, p, keyRes)
	_, err = s2.Open(ctx(t), blob)
	require.NoError(t, err)
	require.Equal(t, 1, f.sts.Issued())
}

func TestSessionFailsWhenSTSRefuses(t *testing.T) {
	f := newFakes(t, time.Hour)
	p := f.provider(t)
	f.sts.Refuse(http.StatusForbidden, "attestation conditions not met")
	_, err := p.Session(ctx(t), wip, keyRes)
	require.Error(t, err)
	for _, want := range []string{"no access token", wip, "Security Token Service", f.sts.URL, "403", "attestation conditions not met"} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), f.subject, "the attestation token leaked into the error")

	// Nothing was cached: once the STS serves again, a session works.
	f.sts.Refuse(0, "")
	s := f.session(t, p, keyRes)
	_, err = s.Seal(ctx(t), []byte("k"))
	require.NoError(t, err)
}

func TestSessionFailsOnWrongSubjectTokenOrAudience(t *testing.T) {
	f := newFakes(t, time.Hour)
	gcpkmstest.WriteTokenFile(t, f.tokenFile) // another token than the STS expects
	p := f.provider(t)
	_, err := p.Session(ctx(t), wip, keyRes)
	require.ErrorContains(t, err, "invalid_grant")
	require.Equal(t, 0, f.sts.Issued())

	f = newFakes(t, time.Hour)
	p = f.provider(t)
	other := strings.Replace(wip, "sigil-provider", "other-provider", 1)
	_, err = p.Session(ctx(t), other, keyRes)
	require.ErrorContains(t, err, "invalid_target")
	require.ErrorContains(t, err, other)
}

func TestSessionFailsWithoutTokenFile(t *testing.T) {
	f := newFakes(t, time.Hour)
	missing := filepath.Join(t.TempDir(), "absent")
	p := f.provider(t, func(c *gcpkms.Config) { c.TokenFile = missing })
	_, err := p.Session(ctx(t), wip, keyRes)
	require.ErrorContains(t, err, missing)
	require.Equal(t, 0, f.sts.Issued())
}

func TestInvalidNamesAreRefusedBeforeAnyCall(t *testing.T) {
	f := newFakes(t, time.Hour)
	p := f.provider(t)
	for _, c := range []struct{ wip, key string }{
		{"", keyRes},
		{"x", keyRes},
		{wip + `","token_url":"http://127.0.0.1:1/`, keyRes}, // no JSON or URL tricks
		{wip + "/extra", keyRes},
		{wip, ""},
		{wip, keyRes + "/cryptoKeyVersions/1"}, // Decrypt needs the key, not a version
		{wip, "projects/p/locations/l/keyRings/r/cryptoKeys/k k"},
	} {
		_, err := p.Session(ctx(t), c.wip, c.key)
		require.ErrorIs(t, err, gcpkms.ErrInvalidName, "%q %q", c.wip, c.key)
	}
	require.Equal(t, 0, f.sts.Issued()+f.sts.Refused())
}

func TestUnknownKeyIsRefused(t *testing.T) {
	f := newFakes(t, time.Hour)
	p := f.provider(t)
	other := strings.Replace(keyRes, "/enclave", "/not-granted", 1)
	s := f.session(t, p, other) // names are fine; the KMS decides
	_, err := s.Seal(ctx(t), []byte("secret key bytes"))
	require.Error(t, err)
	require.Equal(t, codes.PermissionDenied, status.Code(errors.Unwrap(err)))
	require.Contains(t, err.Error(), "Cloud KMS Encrypt with "+other)
	require.NotContains(t, err.Error(), "secret key bytes")

	blob, err := f.kms.Seal(keyRes, []byte("k"))
	require.NoError(t, err)
	_, err = s.Open(ctx(t), blob)
	require.ErrorContains(t, err, "Cloud KMS Decrypt with "+other)
	require.ErrorContains(t, err, "PermissionDenied")
}

func TestCorruptedChecksumsAreRefused(t *testing.T) {
	f := newFakes(t, time.Hour)
	s := f.session(t, f.provider(t), keyRes)
	blob, err := s.Seal(ctx(t), []byte("plain"))
	require.NoError(t, err)

	f.kms.CorruptChecksums(true)
	_, err = s.Seal(ctx(t), []byte("plain"))
	require.ErrorIs(t, err, gcpkms.ErrIntegrity)
	require.ErrorContains(t, err, "ciphertext")
	got, err := s.Open(ctx(t), blob)
	require.ErrorIs(t, err, gcpkms.ErrIntegrity)
	require.ErrorContains(t, err, "plaintext")
	require.Nil(t, got)

	f.kms.CorruptChecksums(false)
	f.kms.SkipVerify(true)
	_, err = s.Seal(ctx(t), []byte("plain"))
	require.ErrorIs(t, err, gcpkms.ErrIntegrity)
	require.ErrorContains(t, err, "did not verify")

	// A blob damaged in storage never reaches the key: the KMS refuses it.
	f.kms.SkipVerify(false)
	bad := append([]byte(nil), blob...)
	bad[len(bad)-1] ^= 0x40
	_, err = s.Open(ctx(t), bad)
	require.Equal(t, codes.InvalidArgument, status.Code(errors.Unwrap(err)))
}

func TestTransientFailuresAreRetried(t *testing.T) {
	f := newFakes(t, time.Hour)
	s := f.session(t, f.provider(t), keyRes)
	f.kms.FailNext(2)
	_, err := s.Seal(ctx(t), []byte("plain"))
	require.NoError(t, err, "two Unavailable answers are retried (3 attempts)")

	f.kms.FailNext(3)
	_, err = s.Seal(ctx(t), []byte("plain"))
	require.Equal(t, codes.Unavailable, status.Code(errors.Unwrap(err)))

	f.kms.FailNext(0)
	f.kms.Fail(codes.PermissionDenied) // not transient: one attempt
	_, err = s.Seal(ctx(t), []byte("plain"))
	require.Equal(t, codes.PermissionDenied, status.Code(errors.Unwrap(err)))
}

// TestTokenRefresh issues tokens valid for 11 s; the client treats a token
// as expired 10 s early, so it exchanges the attestation token again after
// about a second. The fake KMS refuses expired tokens, so every call must
// carry a fresh one. The loop ends as soon as a second token was issued.
func TestTokenRefresh(t *testing.T) {
	f := newFakes(t, 11*time.Second)
	s := f.session(t, f.provider(t), keyRes)
	deadline := time.Now().Add(30 * time.Second)
	calls := 0
	for f.sts.Issued() < 3 && time.Now().Before(deadline) {
		blob, err := s.Seal(ctx(t), []byte("plain"))
		require.NoError(t, err)
		_, err = s.Open(ctx(t), blob)
		require.NoError(t, err)
		calls++
		time.Sleep(100 * time.Millisecond)
	}
	require.GreaterOrEqual(t, f.sts.Issued(), 3, "the token was not refreshed during the run")
	_, _, unauth := f.kms.Counts()
	require.Zero(t, unauth, "a call went out with an expired or unknown token")
	t.Logf("%d seal/open pairs, %d token exchanges", calls, f.sts.Issued())
}

func TestClientCacheIsBounded(t *testing.T) {
	f := newFakes(t, time.Hour)
	wip2 := strings.Replace(wip, "sigil-provider", "second", 1)
	f.sts.AllowAudience(gcpkms.AudiencePrefix + wip2)
	p := f.provider(t, func(c *gcpkms.Config) { c.MaxClients = 1 })
	f.session(t, p, keyRes) // cached
	s2, err := p.Session(ctx(t), wip2, keyRes)
	require.NoError(t, err)
	_, err = s2.Seal(ctx(t), []byte("plain"))
	require.NoError(t, err)
	require.NoError(t, s2.Close()) // its own client goes with it
	_, err = s2.Seal(ctx(t), []byte("plain"))
	require.Error(t, err, "a sealer whose own client was closed still worked")
	// The cached one still works.
	s3 := f.session(t, p, keyRes)
	_, err = s3.Seal(ctx(t), []byte("plain"))
	require.NoError(t, err)
}

func TestInsecureNeedsLoopback(t *testing.T) {
	for _, ep := range []string{"", "10.1.2.3:443", "cloudkms.googleapis.com:443", "127.0.0.1"} {
		_, err := gcpkms.New(gcpkms.Config{Endpoint: ep, Insecure: true})
		require.Error(t, err, ep)
	}
	for _, ep := range []string{"127.0.0.1:9", "[::1]:9", "localhost:9"} {
		p, err := gcpkms.New(gcpkms.Config{Endpoint: ep, Insecure: true})
		require.NoError(t, err, ep)
		p.Close()
	}
	p, err := gcpkms.New(gcpkms.Config{Endpoint: "cloudkms.googleapis.com:443"}) // TLS
	require.NoError(t, err)
	p.Close()
}
