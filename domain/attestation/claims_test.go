package attestation

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	now       = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	digestA   = "sha256:" + strings.Repeat("a", 64)
	digestB   = "sha256:" + strings.Repeat("b", 64)
	serverKey = []byte("server spki")
	otherKey  = []byte("another spki")
	clientPin = PinOf([]byte("client spki"))
	otherPin  = PinOf([]byte("other client spki"))
)

func goodClaims() Claims {
	return Claims{
		Issuer:            DefaultIssuer,
		Audience:          []string{"sigil-enclave"},
		IssuedAt:          now.Add(-10 * time.Minute),
		NotBefore:         now.Add(-10 * time.Minute),
		Expiry:            now.Add(50 * time.Minute),
		Nonces:            []string{NonceOf(serverKey)},
		SoftwareName:      SoftwareConfidentialSpace,
		DebugStatus:       DebugDisabledSinceBoot,
		SupportAttributes: []string{"LATEST", "STABLE", "USABLE"},
		ImageDigest:       digestA,
		Env:               map[string]string{DefaultClientPinsEnv: otherPin.String() + "," + clientPin.String()},
	}
}

func goodExpectations() Expectations {
	return Expectations{
		Issuer:        DefaultIssuer,
		Audience:      "sigil-enclave",
		ImageDigests:  []string{digestB, digestA},
		KeyNonce:      NonceOf(serverKey),
		ClientPinsEnv: DefaultClientPinsEnv,
		ClientPin:     clientPin,
		Leeway:        10 * time.Second,
	}
}

func TestAttestCheckAccepts(t *testing.T) {
	for name, mod := range map[string]func(*Claims, *Expectations){
		"as issued":                  func(*Claims, *Expectations) {},
		"issuer with trailing slash": func(c *Claims, _ *Expectations) { c.Issuer += "/" },
		"several audiences":          func(c *Claims, _ *Expectations) { c.Audience = []string{"x", "sigil-enclave"} },
		"several nonces":             func(c *Claims, _ *Expectations) { c.Nonces = []string{"0123456789", NonceOf(serverKey)} },
		"no nbf":                     func(c *Claims, _ *Expectations) { c.NotBefore = time.Time{} },
		"iat within leeway":          func(c *Claims, _ *Expectations) { c.IssuedAt = now.Add(9 * time.Second); c.NotBefore = c.IssuedAt },
		"expires in a nanosecond":    func(c *Claims, _ *Expectations) { c.Expiry = now.Add(time.Nanosecond) },
		"pins separated by spaces": func(c *Claims, _ *Expectations) {
			c.Env[DefaultClientPinsEnv] = " " + clientPin.String() + "\n" + otherPin.String()
		},
		"pins not checked": func(c *Claims, e *Expectations) {
			delete(c.Env, DefaultClientPinsEnv)
			e.ClientPinsEnv, e.ClientPin = "", Pin{}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, e := goodClaims(), goodExpectations()
			mod(&c, &e)
			if err := Check(c, e, now); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestAttestCheckRefuses breaks one claim at a time; the error must name
// that claim.
func TestAttestCheckRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		claim string
		mod   func(*Claims, *Expectations)
		want  string // in the error
	}{
		{"another issuer", ClaimIssuer, func(c *Claims, _ *Expectations) { c.Issuer = "https://evil.example" }, `"https://evil.example"`},
		{"no issuer", ClaimIssuer, func(c *Claims, _ *Expectations) { c.Issuer = "" }, absent},
		{"another audience", ClaimAudience, func(c *Claims, _ *Expectations) { c.Audience = []string{"https://sts.googleapis.com"} }, `"https://sts.googleapis.com"`},
		{"no audience", ClaimAudience, func(c *Claims, _ *Expectations) { c.Audience = nil }, absent},
		{"expired", ClaimExpiry, func(c *Claims, _ *Expectations) { c.IssuedAt = now.Add(-2 * time.Hour); c.Expiry = now.Add(-time.Hour) }, "expired"},
		{"expires now", ClaimExpiry, func(c *Claims, _ *Expectations) { c.Expiry = now }, "expired"},
		{"expired within leeway", ClaimExpiry, func(c *Claims, _ *Expectations) { c.Expiry = now.Add(-time.Second) }, "expired"},
		{"no expiry", ClaimExpiry, func(c *Claims, _ *Expectations) { c.Expiry = time.Time{} }, absent},
		{"not yet valid", ClaimNotBefore, func(c *Claims, _ *Expectations) { c.NotBefore = now.Add(11 * time.Second) }, "leeway"},
		{"issued in the future", ClaimIssuedAt, func(c *Claims, _ *Expectations) { c.IssuedAt = now.Add(11 * time.Second); c.NotBefore = time.Time{} }, "leeway"},
		{"no iat", ClaimIssuedAt, func(c *Claims, _ *Expectations) { c.IssuedAt = time.Time{} }, absent},
		{"iat after exp", ClaimIssuedAt, func(c *Claims, _ *Expectations) {
			c.Expiry, c.IssuedAt, c.NotBefore = now.Add(5*time.Second), now.Add(6*time.Second), time.Time{}
		}, "before exp"},
		{"bound to another key", ClaimNonce, func(c *Claims, _ *Expectations) { c.Nonces = []string{NonceOf(otherKey)} }, NonceOf(otherKey)},
		{"no nonce", ClaimNonce, func(c *Claims, _ *Expectations) { c.Nonces = nil }, absent},
		{"pin instead of nonce", ClaimNonce, func(c *Claims, _ *Expectations) { c.Nonces = []string{PinOf(serverKey).String()} }, "another key"},
		{"no key to compare", ClaimNonce, func(_ *Claims, e *Expectations) { e.KeyNonce = "" }, "no key"},
		{"not confidential space", ClaimSoftwareName, func(c *Claims, _ *Expectations) { c.SoftwareName = "GCE" }, `"GCE"`},
		{"debug image", ClaimDebugStatus, func(c *Claims, _ *Expectations) { c.DebugStatus = "enabled"; c.SupportAttributes = nil }, `"enabled"`},
		{"no dbgstat", ClaimDebugStatus, func(c *Claims, _ *Expectations) { c.DebugStatus = "" }, absent},
		{"unsupported image", ClaimSupportAttributes, func(c *Claims, _ *Expectations) { c.SupportAttributes = []string{"USABLE"} }, `["USABLE"]`},
		{"no support attributes", ClaimSupportAttributes, func(c *Claims, _ *Expectations) { c.SupportAttributes = nil }, absent},
		{"another image", ClaimImageDigest, func(c *Claims, _ *Expectations) { c.ImageDigest = "sha256:" + strings.Repeat("c", 64) }, strings.Repeat("c", 64)},
		{"digest in upper case", ClaimImageDigest, func(c *Claims, _ *Expectations) { c.ImageDigest = strings.ToUpper(digestA) }, "SHA256"},
		{"no digest", ClaimImageDigest, func(c *Claims, _ *Expectations) { c.ImageDigest = "" }, absent},
		{"daemon not pinned", ClaimEnv + "." + DefaultClientPinsEnv, func(c *Claims, _ *Expectations) { c.Env[DefaultClientPinsEnv] = otherPin.String() }, clientPin.String()},
		{"no pins", ClaimEnv + "." + DefaultClientPinsEnv, func(c *Claims, _ *Expectations) { c.Env = nil }, absent},
		{"garbled pins", ClaimEnv + "." + DefaultClientPinsEnv, func(c *Claims, _ *Expectations) { c.Env[DefaultClientPinsEnv] = clientPin.String() + ",md5:00" }, "entry 2"},
		{"invalid expectations", "(expectations)", func(_ *Claims, e *Expectations) { e.ImageDigests = nil }, "image_digests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, e := goodClaims(), goodExpectations()
			tc.mod(&c, &e)
			err := Check(c, e, now)
			var ce *ClaimError
			if !errors.As(err, &ce) {
				t.Fatalf("Check = %v, want a *ClaimError", err)
			}
			if ce.Claim != tc.claim {
				t.Errorf("claim %q, want %q (%v)", ce.Claim, tc.claim, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.claim) {
				t.Errorf("error %q does not say %q and %q", err, tc.claim, tc.want)
			}
			// The same token is refused in the same words a moment later
			// (the verdict of a token from the future changes in a second):
			// the daemon's pool logs a refusal once per change of its
			// message, and retries every few seconds.
			if later := Check(c, e, now.Add(time.Millisecond)); later == nil || later.Error() != err.Error() {
				t.Errorf("a second later: %v\nwas: %v", later, err)
			}
		})
	}
}

func TestAttestExpectationsValidate(t *testing.T) {
	for name, mod := range map[string]func(*Expectations){
		"no issuer":            func(e *Expectations) { e.Issuer = "" },
		"no audience":          func(e *Expectations) { e.Audience = "" },
		"no digest":            func(e *Expectations) { e.ImageDigests = nil },
		"bad digest":           func(e *Expectations) { e.ImageDigests = []string{"sha256:abc"} },
		"tag instead":          func(e *Expectations) { e.ImageDigests = []string{"latest"} },
		"negative leeway":      func(e *Expectations) { e.Leeway = -time.Second },
		"huge leeway":          func(e *Expectations) { e.Leeway = time.Hour },
		"pin without env name": func(e *Expectations) { e.ClientPinsEnv = "" },
		"env name without pin": func(e *Expectations) { e.ClientPin = Pin{} },
	} {
		t.Run(name, func(t *testing.T) {
			e := goodExpectations()
			mod(&e)
			if err := e.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := goodExpectations().Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzAttestCheck states the invariant of Check: it accepts only claims
// that satisfy every expectation, whatever the claims hold.
func FuzzAttestCheck(f *testing.F) {
	g := goodClaims()
	f.Add(g.Issuer, g.Audience[0], g.Nonces[0], g.SoftwareName, g.DebugStatus, "STABLE", g.ImageDigest, g.Env[DefaultClientPinsEnv], int64(-600), int64(3000))
	f.Add("", "", "", "", "", "", "", "", int64(0), int64(0))
	f.Fuzz(func(t *testing.T, iss, aud, nonce, sw, dbg, support, digest, pins string, iat, exp int64) {
		c := Claims{
			Issuer: iss, Audience: []string{aud}, Nonces: []string{nonce}, SoftwareName: sw, DebugStatus: dbg,
			SupportAttributes: []string{support}, ImageDigest: digest, Env: map[string]string{DefaultClientPinsEnv: pins},
			IssuedAt: now.Add(time.Duration(iat) * time.Second), Expiry: now.Add(time.Duration(exp) * time.Second),
		}
		e := goodExpectations()
		if err := Check(c, e, now); err != nil {
			// A refusal's words do not depend on the clock (the pool logs
			// each change of message once), while the verdict holds.
			if later := Check(c, e, now.Add(time.Second)); later != nil && later.Error() != err.Error() && claimOf(later) == claimOf(err) {
				t.Fatalf("the refusal changed with the clock:\n%v\n%v", err, later)
			}
			return
		}
		listed, _ := ParsePins(pins)
		switch {
		case strings.TrimSuffix(iss, "/") != DefaultIssuer, aud != e.Audience, nonce != e.KeyNonce,
			sw != SoftwareConfidentialSpace, dbg != DebugDisabledSinceBoot, support != SupportStable,
			!slices.Contains(e.ImageDigests, digest), !ContainsPin(listed, clientPin),
			!now.Before(c.Expiry), c.IssuedAt.After(now.Add(e.Leeway)):
			t.Fatalf("accepted %+v", c)
		}
	})
}

func claimOf(err error) string {
	var ce *ClaimError
	if errors.As(err, &ce) {
		return ce.Claim
	}
	return ""
}
