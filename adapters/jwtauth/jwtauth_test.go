package jwtauth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/jwtauth"
	"github.com/sigil-signer/sigil/domain"
)

const (
	alicePass   = "Alice-Passw0rd-2024"
	aliceSecret = "Alice!Secret#0123456789abcdefXYZ-long"
	bobPass     = "Bob-Passw0rd-2024!"
	bobSecret   = "Bob!Secret#0123456789abcdefXYZ-longer"
	newPass     = "Alice-N3w-Passw0rd!"
	newSecret   = "Alice!N3w#Secret0123456789abcdefXYZ"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newAuth(t *testing.T, users map[string]jwtauth.User) (*jwtauth.Auth, *clock) {
	t.Helper()
	c := &clock{t: t0}
	a, err := jwtauth.New(users, jwtauth.Options{Now: c.now})
	require.NoError(t, err)
	return a, c
}

func twoUsers() map[string]jwtauth.User {
	return map[string]jwtauth.User{
		"alice": {Credentials: jwtauth.Credentials{Password: alicePass, Secret: aliceSecret, TTL: 30 * time.Minute}},
		"bob":   {Credentials: jwtauth.Credentials{Password: bobPass, Secret: bobSecret}},
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// craft builds a JWS by hand (independently of the JWT library) with the
// given header and claims, signed with HMAC hash h under secret (no
// signature when h is nil).
func craft(t *testing.T, header, claims map[string]any, secret string, h func() hash.Hash) string {
	t.Helper()
	hb, err := json.Marshal(header)
	require.NoError(t, err)
	cb, err := json.Marshal(claims)
	require.NoError(t, err)
	input := b64(hb) + "." + b64(cb)
	if h == nil {
		return input + "."
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// decode verifies an HS256 token with crypto/hmac (not the JWT library)
// and returns its header and claims.
func decode(t *testing.T, tok, secret string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	require.True(t, hmac.Equal(m.Sum(nil), sig), "token signature does not verify with the user's secret")
	var h, c map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, json.Unmarshal(hb, &h))
	require.NoError(t, json.Unmarshal(cb, &c))
	return h, c
}

func requireUnauthorized(t *testing.T, err error, want string) {
	t.Helper()
	require.Error(t, err)
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err), "%v", err)
	assert.Contains(t, err.Error(), want)
	for _, s := range []string{alicePass, aliceSecret, bobPass, bobSecret, newPass, newSecret} {
		assert.NotContains(t, err.Error(), s, "a credential leaks into an error")
	}
}

func TestLoginIssuesHS256TokenWithUserAndExp(t *testing.T) {
	a, _ := newAuth(t, twoUsers())
	tok, err := a.Login("alice", alicePass)
	require.NoError(t, err)
	h, c := decode(t, tok, aliceSecret)
	assert.Equal(t, "HS256", h["alg"])
	assert.Equal(t, "alice", c["user"])
	assert.Equal(t, float64(t0.Add(30*time.Minute).Unix()), c["exp"], "jwt_exp is minutes")

	tok, err = a.Login("bob", bobPass)
	require.NoError(t, err)
	_, c = decode(t, tok, bobSecret)
	assert.Equal(t, float64(t0.Add(60*time.Minute).Unix()), c["exp"], "default lifetime is 60 minutes")

	user, err := a.Authenticate("bob", tok)
	require.NoError(t, err)
	assert.Equal(t, "bob", user)
}

func TestLoginFailures(t *testing.T) {
	a, _ := newAuth(t, twoUsers())
	for _, tc := range []struct{ user, pass, want string }{
		{"", alicePass, "username and password"},
		{"alice", "", "username and password"},
		{"alice", bobPass, "access denied"},
		{"alice", alicePass + "x", "access denied"},
		{"alice", alicePass[:len(alicePass)-1], "access denied"},
		{"carol", alicePass, "access denied"},
		{"Alice", alicePass, "access denied"},
	} {
		tok, err := a.Login(tc.user, tc.pass)
		assert.Empty(t, tok)
		requireUnauthorized(t, err, tc.want)
	}
}

func TestAuthenticateRefusesHostileTokens(t *testing.T) {
	a, clk := newAuth(t, twoUsers())
	good, err := a.Login("alice", alicePass)
	require.NoError(t, err)
	exp := t0.Add(time.Hour).Unix()
	hs256 := map[string]any{"alg": "HS256", "typ": "JWT"}
	parts := strings.Split(good, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		return string(b)
	}
	otherClaims, _ := json.Marshal(map[string]any{"user": "bob", "exp": exp})

	for _, tc := range []struct {
		name, user, token, want string
	}{
		{"no token", "alice", "", "authentication required"},
		{"no username", "", good, "username header"},
		{"not a JWT", "alice", "hello", "malformed"},
		{"alg none", "alice", craft(t, map[string]any{"alg": "none", "typ": "JWT"}, map[string]any{"user": "alice", "exp": exp}, "", nil), `"none" is not accepted`},
		{"HS512 with the right secret", "alice", craft(t, map[string]any{"alg": "HS512"}, map[string]any{"user": "alice", "exp": exp}, aliceSecret, sha512.New), `"HS512" is not accepted`},
		{"RS256 header", "alice", craft(t, map[string]any{"alg": "RS256"}, map[string]any{"user": "alice", "exp": exp}, aliceSecret, sha256.New), `"RS256" is not accepted`},
		{"unknown alg", "alice", craft(t, map[string]any{"alg": "XX1"}, map[string]any{"user": "alice", "exp": exp}, aliceSecret, sha256.New), "cannot be verified"},
		{"wrong secret", "alice", craft(t, hs256, map[string]any{"user": "alice", "exp": exp}, bobSecret, sha256.New), "not valid for user"},
		{"tampered signature", "alice", parts[0] + "." + parts[1] + "." + flip(parts[2]), "not valid for user"},
		{"tampered claims", "alice", parts[0] + "." + b64(otherClaims) + "." + parts[2], "not valid for user"},
		{"another user's token", "bob", good, "not valid for user"},
		{"token for another user signed with the user's secret", "alice", craft(t, hs256, map[string]any{"user": "bob", "exp": exp}, aliceSecret, sha256.New), "another user"},
		{"no user claim", "alice", craft(t, hs256, map[string]any{"exp": exp}, aliceSecret, sha256.New), "another user"},
		{"no exp", "alice", craft(t, hs256, map[string]any{"user": "alice"}, aliceSecret, sha256.New), "no expiry"},
		{"expired", "alice", craft(t, hs256, map[string]any{"user": "alice", "exp": t0.Add(-time.Second).Unix()}, aliceSecret, sha256.New), "expired"},
		{"unknown user", "carol", good, "not valid for user"},
		{"exp not a number", "alice", craft(t, hs256, map[string]any{"user": "alice", "exp": "tomorrow"}, aliceSecret, sha256.New), "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := a.Authenticate(tc.user, tc.token)
			assert.Empty(t, u)
			requireUnauthorized(t, err, tc.want)
		})
	}

	// The good token works until it expires, then not.
	u, err := a.Authenticate("alice", good)
	require.NoError(t, err)
	assert.Equal(t, "alice", u)
	clk.add(30*time.Minute + time.Second)
	_, err = a.Authenticate("alice", good)
	requireUnauthorized(t, err, "expired")
}

func TestRotation(t *testing.T) {
	next := &jwtauth.Credentials{Password: newPass, Secret: newSecret, TTL: 10 * time.Minute}
	users := map[string]jwtauth.User{"alice": {
		Credentials: jwtauth.Credentials{Password: alicePass, Secret: aliceSecret},
		Next:        next,
		OldUntil:    t0.Add(time.Hour),
	}}
	a, clk := newAuth(t, users)

	// During the window both generations log in, each token signed with
	// its own generation's secret and lifetime, and both authenticate.
	oldTok, err := a.Login("alice", alicePass)
	require.NoError(t, err)
	_, c := decode(t, oldTok, aliceSecret)
	assert.Equal(t, float64(t0.Add(60*time.Minute).Unix()), c["exp"])
	newTok, err := a.Login("alice", newPass)
	require.NoError(t, err)
	_, c = decode(t, newTok, newSecret)
	assert.Equal(t, float64(t0.Add(10*time.Minute).Unix()), c["exp"])
	for _, tok := range []string{oldTok, newTok} {
		_, err := a.Authenticate("alice", tok)
		require.NoError(t, err)
	}

	// After old_cred_exp only the new credentials: the old password fails
	// and a still-unexpired token signed with the old secret is refused.
	clk.add(time.Hour)
	_, err = a.Login("alice", alicePass)
	requireUnauthorized(t, err, "access denied")
	longTok := craft(t, map[string]any{"alg": "HS256"}, map[string]any{"user": "alice", "exp": t0.Add(5 * time.Hour).Unix()}, aliceSecret, sha256.New)
	_, err = a.Authenticate("alice", longTok)
	requireUnauthorized(t, err, "not valid for user")
	tok, err := a.Login("alice", newPass)
	require.NoError(t, err)
	_, err = a.Authenticate("alice", tok)
	require.NoError(t, err)

	// Without old_cred_exp (or with one in the past) new_data is in force
	// at once.
	for _, until := range []time.Time{{}, t0.Add(-time.Minute)} {
		a, _ := newAuth(t, map[string]jwtauth.User{"alice": {
			Credentials: jwtauth.Credentials{Password: alicePass, Secret: aliceSecret}, Next: next, OldUntil: until,
		}})
		_, err = a.Login("alice", alicePass)
		requireUnauthorized(t, err, "access denied")
		_, err = a.Login("alice", newPass)
		require.NoError(t, err)
	}
}

func TestConfigurationChecks(t *testing.T) {
	ok := jwtauth.Credentials{Password: alicePass, Secret: aliceSecret}
	for _, tc := range []struct {
		name string
		user string
		u    jwtauth.User
		want string
	}{
		{"short password", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: "Sh0rt!", Secret: aliceSecret}}, "password should be at least 16"},
		{"no upper", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: "alice-passw0rd-2024", Secret: aliceSecret}}, "uppercase"},
		{"no lower", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: "ALICE-PASSW0RD-2024", Secret: aliceSecret}}, "lowercase"},
		{"no digit", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: "Alice-Password-abcd", Secret: aliceSecret}}, "digit"},
		{"no special", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: "AlicePassw0rd2024x", Secret: aliceSecret}}, "special"},
		{"no secret", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: alicePass}}, "secret should be at least 32"},
		{"short secret", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: alicePass, Secret: "Sh0rt!Sh0rt!Sh0rt!Sh0rt!"}}, "secret should be at least 32"},
		{"weak new password", "u", jwtauth.User{Credentials: ok, Next: &jwtauth.Credentials{Password: "weak", Secret: newSecret}}, "new_data.password"},
		{"same new secret", "u", jwtauth.User{Credentials: ok, Next: &jwtauth.Credentials{Password: newPass, Secret: aliceSecret}}, "change both"},
		{"same new password", "u", jwtauth.User{Credentials: ok, Next: &jwtauth.Credentials{Password: alicePass, Secret: newSecret}}, "change both"},
		{"huge ttl", "u", jwtauth.User{Credentials: jwtauth.Credentials{Password: alicePass, Secret: aliceSecret, TTL: 400 * 24 * time.Hour}}, "jwt_exp"},
		{"empty name", "", jwtauth.User{Credentials: ok}, "user name"},
		{"control character in name", "a\nb", jwtauth.User{Credentials: ok}, "user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jwtauth.New(map[string]jwtauth.User{tc.user: tc.u}, jwtauth.Options{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			for _, s := range []string{tc.u.Password, tc.u.Secret} {
				if s != "" {
					assert.NotContains(t, err.Error(), s)
				}
			}
		})
	}
	_, err := jwtauth.New(nil, jwtauth.Options{})
	assert.ErrorContains(t, err, "no user")

	tm, err := jwtauth.ParseOldCredExp("2026-01-02 15:04:05")
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), tm)
	for _, bad := range []string{"2026-01-02T15:04:05Z", "tomorrow", "2026-13-02 15:04:05", ""} {
		_, err := jwtauth.ParseOldCredExp(bad)
		assert.ErrorContains(t, err, "YYYY-MM-DD hh:mm:ss", bad)
	}
}
