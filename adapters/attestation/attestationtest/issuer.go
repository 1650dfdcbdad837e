// Package attestationtest holds test doubles of Google's attestation
// service and of the Confidential Space launcher: an Issuer that serves an
// OpenID discovery document and key set over HTTPS (with its own test CA)
// and signs Google-shaped tokens with test RSA keys, or with a test PKI
// chain for PKI tokens; and a Launcher that answers POST /v1/token on a Unix
// socket in a temporary directory, as the launcher does, with tokens of a
// configurable workload (image digest, debug image, environment, lifetime).
// Production code reaches them only through configuration (socket path,
// issuer URL, HTTP client trusting the test CA, PKI root).
package attestationtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is a fake Confidential Computing attestation service: its URL is
// the issuer (iss) of its tokens and serves /.well-known/openid-configuration
// and /jwks over HTTPS.
type Issuer struct {
	URL string
	// Client trusts the issuer's TLS certificate.
	Client *http.Client

	srv     *httptest.Server
	mu      sync.Mutex
	kid     string
	key     *rsa.PrivateKey
	keys    map[string]*rsa.PrivateKey // published
	n       int
	fetches atomic.Int64
	delay   atomic.Int64 // nanoseconds before answering a key set request

	pkiRoot   *x509.Certificate
	pkiInter  *x509.Certificate
	pkiLeaf   *x509.Certificate
	pkiKey    *rsa.PrivateKey
	interKey  *rsa.PrivateKey
	stranger  *rsa.PrivateKey // never published
	impostor  *rsa.PrivateKey // published kid, other key material
	strangerC *x509.Certificate
}

// NewIssuer starts an issuer that is closed when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{keys: map[string]*rsa.PrivateKey{}}
	iss.Rotate()
	iss.stranger = rsaKey(t)
	iss.impostor = rsaKey(t)
	iss.buildPKI(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + "/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "dbgstat", "eat_nonce", "google_service_accounts", "hwmodel", "oemid", "secboot", "submods", "swname", "swversion"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		iss.fetches.Add(1)
		if d := time.Duration(iss.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(iss.JWKS())
	})
	iss.srv = httptest.NewTLSServer(mux)
	t.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	iss.Client = iss.srv.Client()
	return iss
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Rotate makes a new signing key the current one and publishes it; the
// previous one is no longer published.
func (i *Issuer) Rotate() {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.n++
	i.kid = fmt.Sprintf("test-key-%d", i.n)
	i.key = k
	i.keys = map[string]*rsa.PrivateKey{i.kid: k}
}

// SetDelay makes the key set endpoint wait d before answering (a hung
// issuer).
func (i *Issuer) SetDelay(d time.Duration) { i.delay.Store(int64(d)) }

// KeyFetches returns how many times the key set was fetched.
func (i *Issuer) KeyFetches() int { return int(i.fetches.Load()) }

// JWKS returns the published key set.
func (i *Issuer) JWKS() []byte {
	i.mu.Lock()
	defer i.mu.Unlock()
	var keys []map[string]string
	for kid, k := range i.keys {
		keys = append(keys, map[string]string{
			"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		})
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// CAPEM returns the PEM certificate the issuer's HTTPS server presents
// (self-signed: it is its own CA), for configurations that name a CA file.
func (i *Issuer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.srv.Certificate().Raw})
}

// Signer says which key signs a token.
type Signer int

// Signers.
const (
	SignIssuer     Signer = iota // the issuer's current, published key
	SignUnknownKey               // a key the issuer never published, under a kid it never used
	SignImpostor                 // other key material under the published kid
	SignPKI                      // the PKI leaf, with the x5c chain in the header
	SignUnknownPKI               // a self-made leaf whose chain leads to no configured root
)

// Sign signs claims as a token: RS256, with kid (OIDC) or x5c (PKI).
func (i *Issuer) Sign(claims jwt.MapClaims, s Signer) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	var key *rsa.PrivateKey
	switch s {
	case SignIssuer:
		tok.Header["kid"], key = i.kid, i.key
	case SignUnknownKey:
		tok.Header["kid"], key = "unknown-key", i.stranger
	case SignImpostor:
		tok.Header["kid"], key = i.kid, i.impostor
	case SignPKI:
		tok.Header["x5c"] = []string{
			base64.StdEncoding.EncodeToString(i.pkiLeaf.Raw),
			base64.StdEncoding.EncodeToString(i.pkiInter.Raw),
		}
		key = i.pkiKey
	case SignUnknownPKI:
		tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(i.strangerC.Raw)}
		key = i.stranger
	}
	out, err := tok.SignedString(key)
	if err != nil {
		panic(err)
	}
	return out
}

// PKIRoot returns the root certificate of the issuer's PKI tokens.
func (i *Issuer) PKIRoot() *x509.Certificate { return i.pkiRoot }

// PKIRootPEM returns PKIRoot in PEM.
func (i *Issuer) PKIRootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.pkiRoot.Raw})
}

// PKIRoots returns a pool holding PKIRoot.
func (i *Issuer) PKIRoots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(i.pkiRoot)
	return p
}

func (i *Issuer) buildPKI(t testing.TB) {
	rootKey := rsaKey(t)
	i.interKey = rsaKey(t)
	i.pkiKey = rsaKey(t)
	now := time.Now()
	mk := func(serial int64, cn string, ca bool, pub *rsa.PublicKey, parent *x509.Certificate, signer *rsa.PrivateKey) *x509.Certificate {
		tpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"Sigil tests"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			BasicConstraintsValid: true,
			IsCA:                  ca,
		}
		if ca {
			tpl.KeyUsage = x509.KeyUsageCertSign
		} else {
			tpl.KeyUsage = x509.KeyUsageDigitalSignature
		}
		if parent == nil {
			parent = tpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	i.pkiRoot = mk(1, "Test Confidential Space Root", true, &rootKey.PublicKey, nil, rootKey)
	i.pkiInter = mk(2, "Test Confidential Space Intermediate", true, &i.interKey.PublicKey, i.pkiRoot, rootKey)
	i.pkiLeaf = mk(3, "Test Confidential Space Signer", false, &i.pkiKey.PublicKey, i.pkiInter, i.interKey)
	i.strangerC = mk(4, "Not Google", false, &i.stranger.PublicKey, nil, i.stranger)
}
