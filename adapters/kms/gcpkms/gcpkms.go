// Package gcpkms is the Cloud KMS adapter of Sigil's enclave (sigil-enclave
// --kms gcp), for a Google Cloud Confidential Space workload. For each
// Workload Identity Pool provider that an Initialize names, it builds Google
// external-account credentials whose subject token is the attestation token
// the Confidential Space launcher writes, exchanged at the Security Token
// Service; with them it seals and opens key blobs through Cloud KMS Encrypt
// and Decrypt on the key Initialize names, following Google's data
// integrity guidelines: CRC32C sent with every request and checked on every
// reply, a reply that fails its check discarded and the call retried a
// bounded number of times, and the key version an Encrypt reply names
// checked to be a version of the configured key. A blob is the bare Cloud KMS
// ciphertext of the CBOR private key map, exactly what ECAD Labs'
// enclave-signer stores, so either enclave opens the other's blobs under the
// same key. Plaintext never appears in errors or logs (the Google client's
// own debug logging, which would print requests, is switched off).
package gcpkms

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sigil-signer/sigil/adapters/gcpauth"
	"github.com/sigil-signer/sigil/adapters/internal/gcpretry"
	"github.com/sigil-signer/sigil/adapters/internal/retry"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// Production values, as enclave-signer uses them: the workload's
// credentials are adapters/gcpauth's.
const (
	DefaultTokenFile = gcpauth.DefaultTokenFile
	DefaultTokenURL  = gcpauth.DefaultTokenURL
	SubjectTokenType = gcpauth.SubjectTokenType
	Scope            = gcpauth.Scope
	AudiencePrefix   = gcpauth.AudiencePrefix
)

// Config configures a Provider. The zero value is production: the
// launcher's token file, Google's Security Token Service and Google's Cloud
// KMS endpoint over TLS. TokenFile, TokenURL and Endpoint are seams for tests
// (fakes on loopback) and private endpoints; nothing else changes with them.
type Config struct {
	// TokenFile holds the subject token; default DefaultTokenFile. It is
	// read again at every token exchange (the launcher refreshes it).
	TokenFile string
	// TokenURL is the token exchange endpoint; default DefaultTokenURL.
	TokenURL string
	// Endpoint is the Cloud KMS gRPC endpoint (host:port); empty means
	// Google's (cloudkms.googleapis.com:443). TLS unless Insecure.
	Endpoint string
	// Insecure dials Endpoint without TLS, sending the access token in
	// clear text: only for fakes in tests, so it requires a loopback
	// Endpoint.
	Insecure bool
	// STSTimeout bounds one token exchange; default 10 s.
	STSTimeout time.Duration
	// Retry is the retry policy of KMS calls on transient gRPC errors and
	// on replies that fail their integrity check; zero means 3 attempts,
	// 100 ms to 1 s apart. The caller's context bounds the whole.
	Retry gcpretry.Policy
	// MaxClients bounds how many providers' clients are kept between
	// sessions (one per distinct Workload Identity provider path); sessions
	// beyond it get a client of their own, closed with the session.
	// Default 4.
	MaxClients int
	// Logger receives token and client events (never tokens or keys). Nil
	// discards them.
	Logger *slog.Logger
}

// Provider hands out per-session sealers. It is safe for concurrent use.
type Provider struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	clients map[string]*client // by Workload Identity provider path
	closed  bool
}

// client is one provider path's credentials and Cloud KMS connection.
type client struct {
	kms *kms.KeyManagementClient
	ts  oauth2.TokenSource
}

// New checks cfg and returns a Provider.
func New(cfg Config) (*Provider, error) {
	if cfg.TokenFile == "" {
		cfg.TokenFile = DefaultTokenFile
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = DefaultTokenURL
	}
	if cfg.STSTimeout <= 0 {
		cfg.STSTimeout = 10 * time.Second
	}
	if cfg.Retry.Attempts <= 0 {
		cfg.Retry = gcpretry.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Attempts: 3}
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 4
	}
	if cfg.Insecure {
		if cfg.Endpoint == "" {
			return nil, errors.New("gcpkms: an insecure (plaintext) KMS connection needs an explicit loopback endpoint")
		}
		if !loopback(cfg.Endpoint) {
			return nil, fmt.Errorf("gcpkms: refusing a plaintext KMS connection to %q: the access token would cross the network in clear; plaintext is for loopback test fakes only", cfg.Endpoint)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{cfg: cfg, log: log, clients: make(map[string]*client)}, nil
}

func loopback(endpoint string) bool {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Resource name shapes: Initialize's strings come from whoever reaches the
// enclave port, so they are checked before they reach a URL or a request.
var (
	segment     = `[A-Za-z0-9._-]{1,128}`
	providerRE  = regexp.MustCompile(`^projects/` + segment + `/locations/` + segment + `/workloadIdentityPools/` + segment + `/providers/` + segment + `$`)
	cryptoKeyRE = regexp.MustCompile(`^projects/` + segment + `/locations/` + segment + `/keyRings/` + segment + `/cryptoKeys/` + segment + `$`)
)

// ErrInvalidName is wrapped by the errors for malformed resource names.
var ErrInvalidName = errors.New("invalid resource name")

func quoteName(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// Session returns the sealer of one enclave session: it checks the two
// resource names, gets (or reuses) the client of the Workload Identity
// provider, and exchanges the attestation token for an access token right
// away, so that a refusal by the Security Token Service fails the
// session's Initialize with a clear error instead of its first seal.
func (p *Provider) Session(ctx context.Context, wipProviderPath, cryptoKey string) (*Sealer, error) {
	if !providerRE.MatchString(wipProviderPath) {
		return nil, fmt.Errorf("%w: wip_provider_path %s is not projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER", ErrInvalidName, quoteName(wipProviderPath))
	}
	if !cryptoKeyRE.MatchString(cryptoKey) {
		return nil, fmt.Errorf("%w: encryption_key_path %s is not projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY", ErrInvalidName, quoteName(cryptoKey))
	}
	c, cached, err := p.client(ctx, wipProviderPath)
	if err != nil {
		return nil, err
	}
	s := &Sealer{key: cryptoKey, c: c, retry: p.cfg.Retry}
	if !cached {
		s.own = true
	}
	return s, nil
}

// ForSession implements enclaveside.KMSProvider: the session's Initialize
// names the Workload Identity provider and the key (Session). Only the
// Confidential Space payload carries them.
func (p *Provider) ForSession(ctx context.Context, creds enclaveside.Credentials) (enclaveside.SessionKMS, error) {
	cs := creds.ConfidentialSpace
	if cs == nil {
		return nil, errors.New("gcpkms: Cloud KMS needs the Confidential Space Initialize (wip_provider_path and encryption_key_path)")
	}
	s, err := p.Session(ctx, cs.WIPProviderPath, cs.EncryptionKeyPath)
	if err != nil {
		return nil, err
	}
	return s, nil
}

var _ enclaveside.KMSProvider = (*Provider)(nil)

// client returns the provider path's client, creating it (and checking
// that a token can be had) when needed. cached reports whether the client
// is shared (kept by the Provider) rather than the caller's to close.
func (p *Provider) client(ctx context.Context, wip string) (c *client, cached bool, err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, errors.New("gcpkms: provider closed")
	}
	if c, ok := p.clients[wip]; ok {
		p.mu.Unlock()
		// A cached token source answers from its cache while the token is
		// valid and exchanges a new one otherwise.
		if err := p.token(ctx, c.ts, wip); err != nil {
			return nil, false, err
		}
		return c, true, nil
	}
	p.mu.Unlock()

	c, err = p.newClient(wip)
	if err != nil {
		return nil, false, err
	}
	if err := p.token(ctx, c.ts, wip); err != nil {
		c.kms.Close()
		return nil, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.clients[wip]; ok && !p.closed { // created concurrently
		c.kms.Close()
		return prev, true, nil
	}
	if p.closed || len(p.clients) >= p.cfg.MaxClients {
		return c, false, nil
	}
	p.clients[wip] = c
	p.log.Info("Cloud KMS client ready", "wip_provider_path", wip)
	return c, true, nil
}

func (p *Provider) newClient(wip string) (*client, error) {
	ts, err := gcpauth.TokenSource(p.auth(), wip)
	if err != nil {
		return nil, fmt.Errorf("gcpkms: %w", err)
	}
	opts := []option.ClientOption{
		option.WithTokenSource(ts),
		// The client logs whole requests at debug level when
		// GOOGLE_SDK_GO_LOGGING_LEVEL=debug: an Encrypt request holds a
		// plain private key. Its logger is therefore always a discarding one.
		option.WithLogger(slog.New(slog.DiscardHandler)),
		option.WithTelemetryDisabled(),
	}
	if p.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(p.cfg.Endpoint))
	}
	if p.cfg.Insecure {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	kc, err := kms.NewKeyManagementClient(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("gcpkms: Cloud KMS client: %w", err)
	}
	// One retry discipline (gcpretry) instead of the client's own.
	kc.CallOptions.Encrypt = nil
	kc.CallOptions.Decrypt = nil
	return &client{kms: kc, ts: ts}, nil
}

// token gets an access token, bounded by ctx as well as by the exchange's
// own timeout.
func (p *Provider) token(ctx context.Context, ts oauth2.TokenSource, wip string) error {
	return gcpauth.Check(ctx, p.auth(), ts, wip)
}

// auth is where the workload's credentials come from (gcpauth).
func (p *Provider) auth() gcpauth.Config {
	return gcpauth.Config{TokenFile: p.cfg.TokenFile, TokenURL: p.cfg.TokenURL, Timeout: p.cfg.STSTimeout}
}

// Close closes every shared client. Sealers still open keep working until
// their own Close only if they own their client.
func (p *Provider) Close() error {
	p.mu.Lock()
	clients := p.clients
	p.clients = map[string]*client{}
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, c := range clients {
		errs = append(errs, c.kms.Close())
	}
	return errors.Join(errs...)
}

// Sealer seals and opens blobs under one Cloud KMS key for one session.
type Sealer struct {
	key   string
	c     *client
	own   bool // the client is the sealer's to close
	retry gcpretry.Policy
	once  sync.Once
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// ErrIntegrity is wrapped by the errors for a Cloud KMS reply whose CRC32C
// checksums do not match (or that says the service could not verify the
// request's): the data was corrupted on the way and is dropped. Such a
// reply is retried within the retry policy (Google's guidance: discard it
// and retry a limited number of times); the error is returned when every
// attempt failed so.
var ErrIntegrity = errors.New("Cloud KMS reply failed its CRC32C integrity check")

// ErrWrongKey is wrapped by the error for an Encrypt reply that names a key
// version of another key than the one asked for: its ciphertext is not
// stored, and the call is not retried.
var ErrWrongKey = errors.New("Cloud KMS reply names another key")

// retryable is the classifier of KMS calls: transient gRPC errors and
// replies that failed their integrity check.
func retryable(err error) bool { return gcpretry.Transient(err) || errors.Is(err, ErrIntegrity) }

// keyVersion reports whether name is a version of key
// (KEY/cryptoKeyVersions/N, N a positive decimal number): the version
// Cloud KMS used, which an Encrypt reply names.
func keyVersion(name, key string) bool {
	v, ok := strings.CutPrefix(name, key+"/cryptoKeyVersions/")
	if !ok || v == "" || len(v) > 19 || v[0] == '0' {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Seal encrypts plain with Cloud KMS. The caller keeps ownership of plain
// (and zeroes it).
func (s *Sealer) Seal(ctx context.Context, plain []byte) ([]byte, error) {
	req := &kmspb.EncryptRequest{Name: s.key, Plaintext: plain, PlaintextCrc32C: wrapperspb.Int64(crc32c(plain))}
	defer func() { req.Plaintext = nil }()
	var blob []byte
	err := retry.Do(ctx, s.retry, retryable, nil, func(ctx context.Context) error {
		resp, err := s.c.kms.Encrypt(ctx, req)
		if err != nil {
			return err
		}
		if !resp.GetVerifiedPlaintextCrc32C() {
			return fmt.Errorf("%w: the service did not verify the plaintext checksum", ErrIntegrity)
		}
		if resp.GetCiphertextCrc32C() == nil || resp.GetCiphertextCrc32C().GetValue() != crc32c(resp.GetCiphertext()) {
			return fmt.Errorf("%w: the ciphertext does not match its checksum", ErrIntegrity)
		}
		if !keyVersion(resp.GetName(), s.key) {
			return fmt.Errorf("%w: the reply names %s, not a version of the key asked for", ErrWrongKey, quoteName(resp.GetName()))
		}
		if len(resp.GetCiphertext()) == 0 {
			return errors.New("empty ciphertext")
		}
		blob = resp.GetCiphertext()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("Cloud KMS Encrypt with %s: %w", s.key, err)
	}
	return blob, nil
}

// Open decrypts blob with Cloud KMS. The caller owns (and zeroes) the
// plaintext returned. (A Decrypt reply names no key: the key is the one
// the request names, and a ciphertext opens only under the key that made
// it.)
func (s *Sealer) Open(ctx context.Context, blob []byte) ([]byte, error) {
	req := &kmspb.DecryptRequest{Name: s.key, Ciphertext: blob, CiphertextCrc32C: wrapperspb.Int64(crc32c(blob))}
	var plain []byte
	err := retry.Do(ctx, s.retry, retryable, nil, func(ctx context.Context) error {
		resp, err := s.c.kms.Decrypt(ctx, req)
		if err != nil {
			return err
		}
		p := resp.GetPlaintext()
		if resp.GetPlaintextCrc32C() == nil || resp.GetPlaintextCrc32C().GetValue() != crc32c(p) {
			clear(p)
			return fmt.Errorf("%w: the plaintext does not match its checksum", ErrIntegrity)
		}
		plain = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("Cloud KMS Decrypt with %s: %w", s.key, err)
	}
	return plain, nil
}

// Close releases the session's client if it has one of its own.
func (s *Sealer) Close() error {
	var err error
	s.once.Do(func() {
		if s.own {
			err = s.c.kms.Close()
		}
	})
	return err
}
