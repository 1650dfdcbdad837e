package attestation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	dattest "github.com/sigil-signer/sigil/domain/attestation"
)

const audience = "sigil-enclave"

var (
	clientPin = dattest.PinOf([]byte("daemon key"))
	keyNonce  = dattest.NonceOf([]byte("enclave key"))
)

func workload() attestationtest.Workload {
	return attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{dattest.DefaultClientPinsEnv: clientPin.String()},
	}
}

func expectations(iss *attestationtest.Issuer) dattest.Expectations {
	return dattest.Expectations{
		Issuer:        iss.URL,
		Audience:      audience,
		ImageDigests:  []string{attestationtest.Digest},
		ClientPinsEnv: dattest.DefaultClientPinsEnv,
		ClientPin:     clientPin,
		Leeway:        5 * time.Second,
	}
}

func newVerifier(t *testing.T, cfg attestation.VerifierConfig) *attestation.Verifier {
	t.Helper()
	v, err := attestation.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// token returns a token the way the launcher makes it for w.
func token(iss *attestationtest.Issuer, w attestationtest.Workload, s attestationtest.Signer) string {
	c := iss.Claims(w, audience, []string{keyNonce})
	if w.Mutate != nil {
		w.Mutate(c)
	}
	return iss.Sign(c, s)
}

func TestAttestVerifierOIDCDiscovery(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), HTTPClient: iss.Client})
	c, err := v.Verify(context.Background(), token(iss, workload(), attestationtest.SignIssuer), keyNonce)
	if err != nil {
		t.Fatal(err)
	}
	if c.ImageDigest != attestationtest.Digest || c.ProjectID != "test-project" || c.Env[dattest.DefaultClientPinsEnv] != clientPin.String() {
		t.Fatalf("claims %+v", c)
	}
	// Several nonces: eat_nonce is an array.
	tok := iss.Sign(iss.Claims(workload(), audience, []string{"0123456789abcdef", keyNonce}), attestationtest.SignIssuer)
	if _, err := v.Verify(context.Background(), tok, keyNonce); err != nil {
		t.Fatalf("eat_nonce array: %v", err)
	}
	if n := iss.KeyFetches(); n != 1 {
		t.Fatalf("%d key fetches, want 1 (cached)", n)
	}
}

// TestAttestVerifierRefusesClaims: each failing claim is named, through
// the whole path (signed token, decoding, decision).
func TestAttestVerifierRefusesClaims(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), HTTPClient: iss.Client})
	for _, tc := range []struct {
		name, claim string
		mod         func(*attestationtest.Workload)
	}{
		{"another image digest", dattest.ClaimImageDigest, func(w *attestationtest.Workload) { w.ImageDigest = "sha256:" + strings.Repeat("0", 64) }},
		{"debug image", dattest.ClaimDebugStatus, func(w *attestationtest.Workload) { w.Debug = true }},
		{"no STABLE", dattest.ClaimSupportAttributes, func(w *attestationtest.Workload) { w.SupportAttributes = []string{"USABLE"} }},
		{"expired", dattest.ClaimExpiry, func(w *attestationtest.Workload) {
			w.Mutate = func(c jwt.MapClaims) {
				c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
			}
		}},
		{"wrong audience", dattest.ClaimAudience, func(w *attestationtest.Workload) {
			w.Mutate = func(c jwt.MapClaims) { c["aud"] = "https://sts.googleapis.com" }
		}},
		{"wrong issuer", dattest.ClaimIssuer, func(w *attestationtest.Workload) {
			w.Mutate = func(c jwt.MapClaims) { c["iss"] = "https://confidentialcomputing.googleapis.com" }
		}},
		{"bound to another key", dattest.ClaimNonce, func(w *attestationtest.Workload) {
			w.Mutate = func(c jwt.MapClaims) { c["eat_nonce"] = dattest.NonceOf([]byte("other key")) }
		}},
		{"not swname", dattest.ClaimSoftwareName, func(w *attestationtest.Workload) {
			w.Mutate = func(c jwt.MapClaims) { c["swname"] = "GCE" }
		}},
		{"daemon not pinned", dattest.ClaimEnv + "." + dattest.DefaultClientPinsEnv, func(w *attestationtest.Workload) {
			w.Env = map[string]string{dattest.DefaultClientPinsEnv: dattest.PinOf([]byte("someone else")).String()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := workload()
			tc.mod(&w)
			_, err := v.Verify(context.Background(), token(iss, w, attestationtest.SignIssuer), keyNonce)
			t.Log(err)
			var ce *dattest.ClaimError
			if !errors.As(err, &ce) || ce.Claim != tc.claim {
				t.Fatalf("Verify = %v, want a refusal of claim %s", err, tc.claim)
			}
		})
	}
}

func TestAttestVerifierRefusesKeys(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), HTTPClient: iss.Client, MinRefetch: time.Hour})
	ctx := context.Background()
	_, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignUnknownKey), keyNonce)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), `kid "unknown-key"`) || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = v.Verify(ctx, token(iss, workload(), attestationtest.SignImpostor), keyNonce)
	t.Log(err)
	if !errors.Is(err, jwt.ErrTokenSignatureInvalid) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("impostor: %v", err)
	}
	// A second unknown kid within MinRefetch does not fetch again.
	before := iss.KeyFetches()
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignUnknownKey), keyNonce); err == nil {
		t.Fatal("accepted")
	}
	if iss.KeyFetches() != before {
		t.Fatalf("fetched the key set again within MinRefetch")
	}
	// Tampered payload.
	tok := token(iss, workload(), attestationtest.SignIssuer)
	parts := strings.Split(tok, ".")
	other := strings.Split(token(iss, attestationtest.Workload{ImageDigest: attestationtest.Digest, Env: workload().Env, Lifetime: 2 * time.Hour}, attestationtest.SignIssuer), ".")
	if _, err := v.Verify(ctx, parts[0]+"."+other[1]+"."+parts[2], keyNonce); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("tampered payload: %v", err)
	}
	// A PKI token to an OIDC verifier.
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignPKI), keyNonce); err == nil || !strings.Contains(err.Error(), "x5c") {
		t.Fatalf("PKI token: %v", err)
	}
	// Algorithm confusion: HS256 keyed with public material, ES256, none.
	claims := iss.Claims(workload(), audience, []string{keyNonce})
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(iss.JWKS()))
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es, _ := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(ek)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, tok := range map[string]string{"HS256": hs, "ES256": es, "none": none, "garbage": "a.b.c", "empty": ""} {
		if _, err := v.Verify(ctx, tok, keyNonce); err == nil {
			t.Errorf("%s token accepted", name)
		}
	}
}

func TestAttestVerifierKeyRotation(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), HTTPClient: iss.Client, MinRefetch: time.Nanosecond})
	ctx := context.Background()
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignIssuer), keyNonce); err != nil {
		t.Fatal(err)
	}
	iss.Rotate()
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignIssuer), keyNonce); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := iss.KeyFetches(); n != 2 {
		t.Fatalf("%d key fetches, want 2", n)
	}
}

func TestAttestVerifierKeySources(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	ctx := context.Background()
	tok := token(iss, workload(), attestationtest.SignIssuer)
	t.Run("static key set", func(t *testing.T) {
		v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), JWKS: iss.JWKS(), HTTPClient: &http.Client{Transport: failing{}}})
		if _, err := v.Verify(ctx, tok, keyNonce); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignUnknownKey), keyNonce); err == nil || !strings.Contains(err.Error(), "configured key set") {
			t.Fatalf("unknown key: %v", err)
		}
	})
	t.Run("key set URL", func(t *testing.T) {
		v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), JWKSURL: iss.URL + "/jwks", HTTPClient: iss.Client})
		if _, err := v.Verify(ctx, tok, keyNonce); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("issuer not trusted", func(t *testing.T) {
		v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss)})
		_, err := v.Verify(ctx, tok, keyNonce)
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) || !strings.Contains(err.Error(), "cannot fetch the issuer's keys") {
			t.Fatalf("Verify = %v, want an unknown authority error", err)
		}
	})
	t.Run("discovery names another issuer", func(t *testing.T) {
		e := expectations(iss)
		e.Issuer = iss.URL + "/other"
		v := newVerifier(t, attestation.VerifierConfig{Expectations: e, HTTPClient: iss.Client})
		if _, err := v.Verify(ctx, tok, keyNonce); err == nil || !strings.Contains(err.Error(), "GET") {
			t.Fatalf("Verify = %v", err)
		}
	})
	for name, cfg := range map[string]attestation.VerifierConfig{
		"http issuer":      {Expectations: func() dattest.Expectations { e := expectations(iss); e.Issuer = "http://x"; return e }()},
		"http jwks url":    {Expectations: expectations(iss), JWKSURL: "http://x/jwks"},
		"bad key set":      {Expectations: expectations(iss), JWKS: []byte(`{"keys":[]}`)},
		"PKI, no root":     {Expectations: expectations(iss), TokenType: attestation.TokenPKI},
		"unknown type":     {Expectations: expectations(iss), TokenType: "SAML"},
		"no digest":        {Expectations: func() dattest.Expectations { e := expectations(iss); e.ImageDigests = nil; return e }()},
		"small RSA in set": {Expectations: expectations(iss), JWKS: []byte(`{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]}`)},
	} {
		if _, err := attestation.NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

type failing struct{}

func (failing) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

func TestAttestVerifierPKI(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), TokenType: attestation.TokenPKI, PKIRoots: iss.PKIRoots()})
	ctx := context.Background()
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignPKI), keyNonce); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignUnknownPKI), keyNonce); err == nil || !strings.Contains(err.Error(), "x5c") {
		t.Fatalf("foreign chain: %v", err)
	}
	if _, err := v.Verify(ctx, token(iss, workload(), attestationtest.SignIssuer), keyNonce); err == nil || !strings.Contains(err.Error(), "x5c") {
		t.Fatalf("OIDC token: %v", err)
	}
	// The claims are checked as for OIDC tokens.
	w := workload()
	w.Debug = true
	var ce *dattest.ClaimError
	if _, err := v.Verify(ctx, token(iss, w, attestationtest.SignPKI), keyNonce); !errors.As(err, &ce) || ce.Claim != dattest.ClaimDebugStatus {
		t.Fatalf("debug image: %v", err)
	}
}

// TestAttestVerifierKeyCacheAges crosses each interval of the key cache
// with a fake clock: the key set is used for KeysMaxAge, fetched again
// after it, an unknown kid fetches at most once per MinRefetch, and a
// failed refetch of a stale set keeps its keys.
func TestAttestVerifierKeyCacheAges(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	clock := time.Now()
	v := newVerifier(t, attestation.VerifierConfig{
		Expectations: expectations(iss), HTTPClient: iss.Client,
		KeysMaxAge: time.Hour, MinRefetch: 10 * time.Second, FetchTimeout: 200 * time.Millisecond,
		Now: func() time.Time { return clock },
	})
	w := workload()
	w.Lifetime = 48 * time.Hour
	ctx := context.Background()
	verify := func(s attestationtest.Signer) error {
		_, err := v.Verify(ctx, token(iss, w, s), keyNonce)
		return err
	}
	step := func(name string, d time.Duration, s attestationtest.Signer, ok bool, fetches int) {
		t.Helper()
		clock = clock.Add(d)
		err := verify(s)
		if (err == nil) != ok {
			t.Fatalf("%s: Verify = %v", name, err)
		}
		if got := iss.KeyFetches(); got != fetches {
			t.Fatalf("%s: %d key fetches, want %d", name, got, fetches)
		}
	}
	step("first", 0, attestationtest.SignIssuer, true, 1)
	step("within max age", 59*time.Minute, attestationtest.SignIssuer, true, 1)
	step("past max age", 2*time.Minute, attestationtest.SignIssuer, true, 2)
	step("unknown kid right after a fetch", 0, attestationtest.SignUnknownKey, false, 2)
	step("unknown kid within MinRefetch", 9*time.Second, attestationtest.SignUnknownKey, false, 2)
	step("unknown kid past MinRefetch", 2*time.Second, attestationtest.SignUnknownKey, false, 3)
	iss.SetDelay(5 * time.Second) // the issuer hangs: refetches time out
	start := time.Now()
	step("stale set, issuer down", 2*time.Hour, attestationtest.SignIssuer, true, 4)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a hung issuer held Verify for %v (FetchTimeout 200ms)", d)
	}
	start = time.Now()
	step("stale set, issuer down, within MinRefetch", time.Second, attestationtest.SignIssuer, true, 4)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Verify waited %v for the hung issuer again", d)
	}
	step("unknown kid, issuer down, within MinRefetch", time.Second, attestationtest.SignUnknownKey, false, 4)
	if _, err := v.Verify(ctx, token(iss, w, attestationtest.SignUnknownKey), keyNonce); err == nil || !strings.Contains(err.Error(), "cannot fetch") {
		t.Fatalf("unknown kid while the issuer is down: %v", err)
	}
	iss.SetDelay(0)
	step("issuer back, past MinRefetch", 11*time.Second, attestationtest.SignIssuer, true, 5)
}

// TestAttestVerifierFetchTimeout: a hung issuer fails the first
// verification after FetchTimeout, with an error saying the keys could not
// be fetched.
func TestAttestVerifierFetchTimeout(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	v := newVerifier(t, attestation.VerifierConfig{Expectations: expectations(iss), HTTPClient: iss.Client, FetchTimeout: 200 * time.Millisecond})
	iss.SetDelay(5 * time.Second)
	defer iss.SetDelay(0)
	start := time.Now()
	_, err := v.Verify(context.Background(), token(iss, workload(), attestationtest.SignIssuer), keyNonce)
	if err == nil || !strings.Contains(err.Error(), "cannot fetch the issuer's keys") {
		t.Fatalf("Verify = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Verify took %v", d)
	}
}
