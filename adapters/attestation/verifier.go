package attestation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigil-signer/sigil/domain/attestation"
)

// VerifierConfig configures a Verifier. Expectations holds everything but
// the per-connection KeyNonce (Verify's argument). For OIDC tokens the keys
// come, in order of precedence, from JWKS (a key set given inline, for
// example read from a file), JWKSURL, or the discovery document of
// Expectations.Issuer; PKI tokens need PKIRoots.
type VerifierConfig struct {
	Expectations attestation.Expectations
	TokenType    TokenType // OIDC (default) or PKI: the type the enclave asks for
	JWKS         []byte    // a JSON Web Key Set: no fetching at all
	JWKSURL      string    // https URL of the key set (skips discovery)
	PKIRoots     *x509.CertPool
	// HTTPClient fetches the discovery document and the key set (default:
	// a client with FetchTimeout and the system's roots). Tests give one
	// that trusts their fake issuer.
	HTTPClient   *http.Client
	FetchTimeout time.Duration // default 10 s
	// KeysMaxAge is how long a fetched key set is used before it is
	// fetched again (default 1 h; a failed refetch keeps the old keys).
	KeysMaxAge time.Duration
	// MinRefetch is the shortest interval between two fetches (default
	// 10 s), so that tokens with made-up key ids cannot make the daemon
	// hammer the issuer, and a hung issuer delays one handshake per
	// interval, not every one.
	MinRefetch time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verifier authenticates attestation tokens and checks their claims. It is
// safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser

	mu        sync.Mutex // guards keys, fetchedAt, lastFetch, fetchErr; held during a fetch
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time
	lastFetch time.Time
	fetchErr  error // of the last fetch, if it failed
	jwksURL   string
}

// NewVerifier checks cfg and returns a Verifier. Nothing is fetched yet.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Expectations.Issuer == "" {
		cfg.Expectations.Issuer = attestation.DefaultIssuer
	}
	if err := cfg.Expectations.Validate(); err != nil {
		return nil, err
	}
	if cfg.TokenType == "" {
		cfg.TokenType = TokenOIDC
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.KeysMaxAge <= 0 {
		cfg.KeysMaxAge = time.Hour
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.FetchTimeout}
	}
	v := &Verifier{cfg: cfg}
	switch cfg.TokenType {
	case TokenOIDC:
		v.parser = jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
		switch {
		case len(cfg.JWKS) > 0:
			keys, err := parseJWKS(cfg.JWKS)
			if err != nil {
				return nil, err
			}
			v.keys = keys
		case cfg.JWKSURL != "":
			if err := httpsURL(cfg.JWKSURL); err != nil {
				return nil, fmt.Errorf("jwks_url: %w", err)
			}
			v.jwksURL = cfg.JWKSURL
		default:
			if err := httpsURL(cfg.Expectations.Issuer); err != nil {
				return nil, fmt.Errorf("issuer: %w", err)
			}
		}
	case TokenPKI:
		if cfg.PKIRoots == nil {
			return nil, errors.New("attestation: PKI tokens need a root certificate (pki_root_file)")
		}
		v.parser = jwt.NewParser(jwt.WithValidMethods([]string{"RS256", "ES256"}), jwt.WithoutClaimsValidation())
	default:
		return nil, fmt.Errorf("attestation: token type %q (want %s or %s)", cfg.TokenType, TokenOIDC, TokenPKI)
	}
	return v, nil
}

func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https URL", s)
	}
	return nil
}

// Expectations returns the static expectations the verifier checks.
func (v *Verifier) Expectations() attestation.Expectations { return v.cfg.Expectations }

// Verify authenticates token and checks its claims, with keyNonce (NonceOf
// the SubjectPublicKeyInfo of the TLS key the connection uses) as the
// nonce the token must carry. It returns the claims, or an error that says
// what failed: the signature (naming the header field: alg, kid, x5c) or,
// as a wrapped *attestation.ClaimError, the first claim that failed. ctx
// bounds a fetch of the issuer's keys.
func (v *Verifier) Verify(ctx context.Context, token, keyNonce string) (attestation.Claims, error) {
	var (
		g      googleClaims
		keyErr error // why no key was found, said plainly
	)
	_, err := v.parser.ParseWithClaims(token, &g, func(t *jwt.Token) (k any, err error) {
		defer func() { keyErr = err }()
		if v.cfg.TokenType == TokenPKI {
			return v.pkiKey(t)
		}
		if _, ok := t.Header["x5c"]; ok {
			return nil, errors.New("header x5c: a PKI token, but the daemon expects OIDC tokens (token_type)")
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("header kid: absent")
		}
		return v.key(ctx, kid)
	})
	if keyErr != nil {
		return attestation.Claims{}, fmt.Errorf("attestation token refused: %w", keyErr)
	}
	if err != nil {
		return attestation.Claims{}, fmt.Errorf("attestation token refused: %w", unwrapJWT(err))
	}
	c := g.domainClaims()
	e := v.cfg.Expectations
	e.KeyNonce = keyNonce
	if err := attestation.Check(c, e, v.cfg.Now()); err != nil {
		return c, err
	}
	return c, nil
}

// unwrapJWT turns the jwt library's joined errors into one readable error
// that still matches errors.Is(err, jwt.ErrTokenSignatureInvalid) etc.
func unwrapJWT(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("signature: does not verify with the issuer's key: %w", err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("malformed token: %w", err)
	}
	return err
}

// key returns the issuer's key kid, fetching the key set when it is unknown
// (at most once per MinRefetch) or older than KeysMaxAge.
func (v *Verifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cfg.JWKS) > 0 {
		if k, ok := v.keys[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("header kid %q: not in the configured key set", kid)
	}
	now := v.cfg.Now()
	k, known := v.keys[kid]
	stale := now.Sub(v.fetchedAt) >= v.cfg.KeysMaxAge
	if known && !stale {
		return k, nil
	}
	// Fetch at most once per MinRefetch, whatever the reason (an unknown
	// kid, a stale set): a hung or failing issuer then costs one
	// FetchTimeout per interval, not one per handshake.
	if v.lastFetch.IsZero() || now.Sub(v.lastFetch) >= v.cfg.MinRefetch {
		v.lastFetch = now
		fctx, cancel := context.WithTimeout(ctx, v.cfg.FetchTimeout)
		keys, err := v.fetchKeys(fctx)
		cancel()
		if err == nil {
			v.keys, v.fetchedAt, v.fetchErr = keys, now, nil
		} else {
			v.fetchErr = err
		}
	}
	if k, ok := v.keys[kid]; ok {
		return k, nil // a failed refetch of a stale set keeps its keys
	}
	if v.fetchErr != nil {
		return nil, fmt.Errorf("header kid %q: cannot fetch the issuer's keys: %w", kid, v.fetchErr)
	}
	return nil, fmt.Errorf("header kid %q: the issuer publishes no such key (token signed by an unknown key)", kid)
}

const maxDocument = 1 << 20

func (v *Verifier) get(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(data) > maxDocument {
		return fmt.Errorf("GET %s: larger than %d bytes", u, maxDocument)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

func (v *Verifier) fetchKeys(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	jwksURL := v.jwksURL
	if jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		iss := strings.TrimSuffix(v.cfg.Expectations.Issuer, "/")
		if err := v.get(ctx, iss+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, err
		}
		if strings.TrimSuffix(doc.Issuer, "/") != iss {
			return nil, fmt.Errorf("discovery document of %s names issuer %q", iss, doc.Issuer)
		}
		if err := httpsURL(doc.JWKSURI); err != nil {
			return nil, fmt.Errorf("discovery document of %s: jwks_uri: %w", iss, err)
		}
		jwksURL = doc.JWKSURI
	}
	var raw json.RawMessage
	if err := v.get(ctx, jwksURL, &raw); err != nil {
		return nil, err
	}
	return parseJWKS(raw)
}

// parseJWKS reads the RSA signing keys of a JSON Web Key Set (RFC 7517);
// other keys are skipped. A set with no usable key is an error.
func parseJWKS(data []byte) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey)
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Kid == "" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("key set: key %q: bad n or e", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("key set: key %q: RSA key of %d bits, exponent %d (want at least 2048 bits, an odd exponent)", k.Kid, pub.N.BitLen(), pub.E)
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("key set: no RSA signing key")
	}
	return keys, nil
}

// pkiKey checks a PKI token's x5c chain against the configured roots and
// returns the leaf's key, which must match the token's alg.
func (v *Verifier) pkiKey(t *jwt.Token) (any, error) {
	raw, ok := t.Header["x5c"].([]any)
	if !ok || len(raw) == 0 {
		return nil, errors.New("header x5c: absent (an OIDC token, but the daemon expects PKI tokens)")
	}
	if len(raw) > 8 {
		return nil, fmt.Errorf("header x5c: %d certificates (at most 8)", len(raw))
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		s, ok := r.(string)
		if !ok {
			return nil, fmt.Errorf("header x5c: entry %d is not a string", i)
		}
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("header x5c: entry %d: %v", i, err)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("header x5c: entry %d: %v", i, err)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: v.cfg.PKIRoots, Intermediates: inter, CurrentTime: v.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("header x5c: the chain does not lead to the configured root: %v", err)
	}
	switch k := certs[0].PublicKey.(type) {
	case *rsa.PublicKey:
		if t.Method.Alg() != "RS256" {
			return nil, fmt.Errorf("header alg %q: the x5c leaf holds an RSA key", t.Method.Alg())
		}
		return k, nil
	case *ecdsa.PublicKey:
		if t.Method.Alg() != "ES256" || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("header alg %q: the x5c leaf holds an ECDSA key on %s", t.Method.Alg(), k.Curve.Params().Name)
		}
		return k, nil
	}
	return nil, fmt.Errorf("header x5c: leaf key of type %T", certs[0].PublicKey)
}
