package securechannel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// DefaultAudience is the audience the enclave asks tokens for and the
// daemon expects, unless configured otherwise.
const DefaultAudience = "sigil-enclave"

// DefaultLeeway tolerates tokens issued up to this much in the future by
// the daemon's clock.
const DefaultLeeway = 10 * time.Second

// ClientSettings is the daemon's configuration of the attested channel (a
// section of the vault configuration). Files are read by Client.
type ClientSettings struct {
	// ClientKeyFile is the daemon's TLS key (PKCS#8 PEM, mode 0600).
	ClientKeyFile string `yaml:"client_key_file"`
	// ImageDigests is the allow-list of workload image digests.
	ImageDigests []string `yaml:"image_digests"`
	// Audience of the enclave's tokens (default DefaultAudience).
	Audience string `yaml:"audience"`
	// TokenType is OIDC (default) or PKI, as the enclave asks for.
	TokenType string `yaml:"token_type"`
	// Issuer of the tokens (default attestation.DefaultIssuer); its
	// discovery document names the key set of OIDC tokens.
	Issuer string `yaml:"issuer"`
	// JWKSURL or JWKSFile replace discovery: the key set's https URL, or a
	// file holding the key set (no fetching).
	JWKSURL  string `yaml:"jwks_url"`
	JWKSFile string `yaml:"jwks_file"`
	// IssuerCAFile holds the PEM roots that the issuer's HTTPS server is
	// checked against instead of the system's (private deployments,
	// tests).
	IssuerCAFile string `yaml:"issuer_ca_file"`
	// PKIRootFile holds the PEM root certificate of PKI tokens (Google's
	// attestation-pki-root), required for token_type PKI.
	PKIRootFile string `yaml:"pki_root_file"`
	// ClientPinsEnv names the launch environment variable listing the
	// admitted client pins (default attestation.DefaultClientPinsEnv).
	ClientPinsEnv string `yaml:"client_pins_env"`
	// Leeway for iat and nbf, a Go duration (default DefaultLeeway).
	Leeway string `yaml:"leeway"`
}

// Client loads the files the settings name and returns the client. Errors
// name the setting.
func (s ClientSettings) Client(log *slog.Logger) (*Client, error) {
	if s.ClientKeyFile == "" {
		return nil, fmt.Errorf("attested channel: client_key_file is required")
	}
	key, err := LoadClientKey(s.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("attested channel: client_key_file: %w", err)
	}
	v, err := s.Verifier(key.Pin)
	if err != nil {
		return nil, err
	}
	return NewClient(ClientConfig{Key: key, Verifier: v, Log: log})
}

// Verifier builds the token verifier for a daemon whose key has pin.
func (s ClientSettings) Verifier(pin attestation.Pin) (*adattest.Verifier, error) {
	typ, err := adattest.ParseTokenType(s.TokenType)
	if err != nil {
		return nil, fmt.Errorf("attested channel: token_type: %w", err)
	}
	e := attestation.Expectations{
		Issuer:        s.Issuer,
		Audience:      s.Audience,
		ImageDigests:  s.ImageDigests,
		ClientPinsEnv: s.ClientPinsEnv,
		ClientPin:     pin,
		Leeway:        DefaultLeeway,
	}
	if e.Issuer == "" {
		e.Issuer = attestation.DefaultIssuer
	}
	if e.Audience == "" {
		e.Audience = DefaultAudience
	}
	if e.ClientPinsEnv == "" {
		e.ClientPinsEnv = attestation.DefaultClientPinsEnv
	}
	if s.Leeway != "" {
		if e.Leeway, err = time.ParseDuration(s.Leeway); err != nil {
			return nil, fmt.Errorf("attested channel: leeway: %w", err)
		}
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("attested channel: %w", err)
	}
	cfg := adattest.VerifierConfig{Expectations: e, TokenType: typ, JWKSURL: s.JWKSURL}
	if s.JWKSFile != "" {
		if cfg.JWKS, err = os.ReadFile(s.JWKSFile); err != nil {
			return nil, fmt.Errorf("attested channel: jwks_file: %w", err)
		}
	}
	if s.IssuerCAFile != "" {
		pool, err := readPool(s.IssuerCAFile)
		if err != nil {
			return nil, fmt.Errorf("attested channel: issuer_ca_file: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	if s.PKIRootFile != "" {
		if cfg.PKIRoots, err = readPool(s.PKIRootFile); err != nil {
			return nil, fmt.Errorf("attested channel: pki_root_file: %w", err)
		}
	}
	v, err := adattest.NewVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("attested channel: %w", err)
	}
	return v, nil
}

func readPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// ServerSettings is the enclave's configuration of the attested channel.
type ServerSettings struct {
	// LauncherSocket is the launcher's token endpoint (default
	// adattest.DefaultLauncherSocket).
	LauncherSocket string
	// Audience of the tokens (default DefaultAudience).
	Audience string
	// TokenType: OIDC (default) or PKI.
	TokenType string
	// ClientPins is the value of the launch environment variable listing
	// the admitted client pins (attestation.ParsePins).
	ClientPins string
	// RetryInitial and RetryMax bound the backoff of token renewals
	// (adattest.SourceConfig).
	RetryInitial, RetryMax time.Duration
}

// ServerSettingsFromEnv reads ClientPins from the launch environment
// (attestation.DefaultClientPinsEnv); other fields are left to flags.
func ServerSettingsFromEnv(getenv func(string) string) ServerSettings {
	return ServerSettings{ClientPins: getenv(attestation.DefaultClientPinsEnv)}
}

// OpenServer makes the enclave's ephemeral key, gets its first token from
// the launcher (retrying until ctx ends), and returns the server; Close
// stops the token renewals.
func OpenServer(ctx context.Context, s ServerSettings, log *slog.Logger) (*Server, error) {
	pins, err := attestation.ParsePins(s.ClientPins)
	if err != nil {
		return nil, fmt.Errorf("attested channel: %s: %w", attestation.DefaultClientPinsEnv, err)
	}
	if len(pins) == 0 {
		return nil, fmt.Errorf("attested channel: %s lists no client pin", attestation.DefaultClientPinsEnv)
	}
	typ, err := adattest.ParseTokenType(s.TokenType)
	if err != nil {
		return nil, fmt.Errorf("attested channel: %w", err)
	}
	aud := s.Audience
	if aud == "" {
		aud = DefaultAudience
	}
	key, nonce, err := NewEphemeralKey()
	if err != nil {
		return nil, err
	}
	src, err := adattest.NewSource(adattest.SourceConfig{
		Fetcher:      adattest.NewLauncher(s.LauncherSocket),
		Request:      adattest.TokenRequest{Audience: aud, Nonces: []string{nonce}, TokenType: typ},
		Log:          log,
		RetryInitial: s.RetryInitial,
		RetryMax:     s.RetryMax,
	})
	if err != nil {
		return nil, fmt.Errorf("attested channel: %w", err)
	}
	if err := src.Start(ctx); err != nil {
		return nil, fmt.Errorf("attested channel: %w", err)
	}
	srv, err := NewServer(ServerConfig{Key: key, Tokens: src, ClientPins: pins, Log: log})
	if err != nil {
		src.Close()
		return nil, err
	}
	srv.closers = append(srv.closers, src.Close)
	return srv, nil
}
