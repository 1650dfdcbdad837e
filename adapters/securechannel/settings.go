package securechannel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
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

// SettingError is an invalid setting of the attested channel's section:
// Setting names it as the configuration file does (client_key_file,
// image_digests[1]).
type SettingError struct {
	Setting string
	Msg     string
	Err     error // the underlying error, if any
}

func (e *SettingError) Error() string { return "attested channel: " + e.Setting + ": " + e.Msg }

func (e *SettingError) Unwrap() error { return e.Err }

func settingErr(setting string, err error) error {
	return &SettingError{Setting: setting, Msg: err.Error(), Err: err}
}

func settingErrf(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Msg: fmt.Sprintf(format, args...)}
}

// Check validates the settings without reading any file (what `sigil
// config check` can tell); every error is a *SettingError.
func (s ClientSettings) Check() error {
	if strings.TrimSpace(s.ClientKeyFile) == "" {
		return settingErrf("client_key_file", "required (sigil enclave-client-key FILE creates the key and prints its pin)")
	}
	if len(s.ImageDigests) == 0 {
		return settingErrf("image_digests", "required: the workload image digests (sha256:…) this daemon talks to")
	}
	for i, d := range s.ImageDigests {
		if !attestation.ValidDigest(d) {
			return settingErrf(fmt.Sprintf("image_digests[%d]", i), "%s is not an image digest (sha256: followed by 64 lowercase hex digits)", quote(d))
		}
	}
	typ, err := adattest.ParseTokenType(s.TokenType)
	if err != nil {
		return settingErr("token_type", err)
	}
	if len(s.Audience) > adattest.MaxAudience {
		return settingErrf("audience", "%d bytes (at most %d)", len(s.Audience), adattest.MaxAudience)
	}
	if s.Leeway != "" {
		d, err := time.ParseDuration(s.Leeway)
		if err != nil {
			return settingErrf("leeway", "invalid duration %s (want a duration such as 10s)", quote(s.Leeway))
		}
		if d < 0 || d > attestation.MaxLeeway {
			return settingErrf("leeway", "%v is out of range (allowed: 0 to %v)", d, attestation.MaxLeeway)
		}
	}
	if s.Issuer != "" {
		if err := httpsURL(s.Issuer); err != nil {
			return settingErr("issuer", err)
		}
	}
	switch typ {
	case adattest.TokenPKI:
		if s.PKIRootFile == "" {
			return settingErrf("pki_root_file", "required with token_type PKI (the root certificate of Google's attestation PKI)")
		}
	default:
		if s.JWKSURL != "" && s.JWKSFile != "" {
			return settingErrf("jwks_file", "give jwks_url or jwks_file, not both")
		}
		if s.JWKSURL != "" {
			if err := httpsURL(s.JWKSURL); err != nil {
				return settingErr("jwks_url", err)
			}
		}
	}
	return nil
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return fmt.Sprintf("%q", s)
}

func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%s is not an https URL", quote(s))
	}
	return nil
}

// Client checks the settings, loads the files they name and returns the
// client. Every error is a *SettingError naming the setting.
func (s ClientSettings) Client(log *slog.Logger) (*Client, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	key, err := LoadClientKey(s.ClientKeyFile)
	if err != nil {
		return nil, settingErr("client_key_file", err)
	}
	v, err := s.Verifier(key.Pin)
	if err != nil {
		return nil, err
	}
	return NewClient(ClientConfig{Key: key, Verifier: v, Log: log})
}

// Verifier builds the token verifier for a daemon whose key has pin.
// Every error is a *SettingError naming the setting.
func (s ClientSettings) Verifier(pin attestation.Pin) (*adattest.Verifier, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	typ, _ := adattest.ParseTokenType(s.TokenType)
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
		e.Leeway, _ = time.ParseDuration(s.Leeway)
	}
	if err := e.Validate(); err != nil {
		return nil, settingErr("image_digests", err)
	}
	cfg := adattest.VerifierConfig{Expectations: e, TokenType: typ, JWKSURL: s.JWKSURL}
	var err error
	if s.JWKSFile != "" {
		if cfg.JWKS, err = os.ReadFile(s.JWKSFile); err != nil {
			return nil, settingErr("jwks_file", err)
		}
	}
	if s.IssuerCAFile != "" {
		pool, err := readPool(s.IssuerCAFile)
		if err != nil {
			return nil, settingErr("issuer_ca_file", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	if s.PKIRootFile != "" {
		if cfg.PKIRoots, err = readPool(s.PKIRootFile); err != nil {
			return nil, settingErr("pki_root_file", err)
		}
	}
	v, err := adattest.NewVerifier(cfg)
	if err != nil {
		setting := "jwks_file"
		switch {
		case typ == adattest.TokenPKI:
			setting = "pki_root_file"
		case s.JWKSURL != "":
			setting = "jwks_url"
		case s.JWKSFile == "":
			setting = "issuer"
		}
		return nil, settingErr(setting, err)
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
