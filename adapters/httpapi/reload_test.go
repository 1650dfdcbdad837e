package httpapi_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/jwtauth"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type reloadSetup struct {
	url     string
	clock   *fakeClock
	calls   atomic.Int32
	fail    atomic.Pointer[error]
	guard   atomic.Pointer[httpapi.ReloadGuard]
	client  tezos.PrivateKey
	clientP tezos.PublicKey
}

func newReloadSetup(t *testing.T) *reloadSetup {
	t.Helper()
	s := &reloadSetup{clock: &fakeClock{now: time.Unix(1_800_000_000, 0)}}
	var err error
	s.client, err = tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	s.clientP, _ = s.client.Public()
	s.guard.Store(&httpapi.ReloadGuard{})
	h := httpapi.ReloadHandler(httpapi.ReloadOptions{
		Reload: func(context.Context) (any, error) {
			s.calls.Add(1)
			if e := s.fail.Load(); e != nil {
				return nil, *e
			}
			return map[string]int{"keys_after": 2}, nil
		},
		Guard: func() httpapi.ReloadGuard { return *s.guard.Load() },
		Now:   s.clock.Now,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/reload"
	return s
}

// signed returns the query authenticating a reload signed by sk at ts.
func signed(t *testing.T, sk tezos.PrivateKey, ts int64) string {
	sig, err := sk.Sign(signer.ReloadMessage(ts), tezos.SignVersion2)
	require.NoError(t, err)
	return fmt.Sprintf("?timestamp=%d&authentication=%s", ts, sig)
}

func TestReloadEndpointOpen(t *testing.T) {
	s := newReloadSetup(t)
	code, body, _ := call(t, "POST", s.url, "")
	require.Equal(t, 200, code, body)
	assert.JSONEq(t, `{"keys_after": 2}`, body)
	code, _, h := call(t, "GET", s.url, "")
	assert.Equal(t, 405, code)
	assert.Equal(t, "POST", h.Get("Allow"))

	// The configuration is refused: 422 with the reason, without host
	// paths; a failing dependency is its kind's status.
	refused := fmt.Errorf("%w: configuration /etc/sigil/sigil.yaml: line 3: tezos.tz1x: unknown request kind", signer.ErrReloadRefused)
	s.fail.Store(&refused)
	code, body, _ = call(t, "POST", s.url, "")
	assert.Equal(t, 422, code, body)
	assert.Contains(t, body, "line 3: tezos.tz1x: unknown request kind")
	assert.NotContains(t, body, "/etc/sigil")
	s.clock.Add(time.Hour)
	unavailable := domain.Errorf(domain.KindUnavailable, "vault cs: enclave unreachable")
	s.fail.Store(&unavailable)
	code, body, _ = call(t, "POST", s.url, "")
	assert.Equal(t, 503, code, body)
}

// TestReloadEndpointRateLimit: Burst reloads at once, then one per Every;
// a client told to wait gets Retry-After, and is served once it waited.
func TestReloadEndpointRateLimit(t *testing.T) {
	s := newReloadSetup(t)
	for i := range httpapi.DefaultReloadBurst {
		code, body, _ := call(t, "POST", s.url, "")
		require.Equal(t, 200, code, "reload %d: %s", i, body)
	}
	code, body, h := call(t, "POST", s.url, "")
	require.Equal(t, 429, code, body)
	assert.Equal(t, strconv.Itoa(int(httpapi.DefaultReloadEvery/time.Second)), h.Get("Retry-After"))
	assert.Equal(t, int32(httpapi.DefaultReloadBurst), s.calls.Load(), "a refused request does not reload")

	s.clock.Add(httpapi.DefaultReloadEvery - time.Second) // not quite
	code, _, h = call(t, "POST", s.url, "")
	require.Equal(t, 429, code)
	assert.Equal(t, "1", h.Get("Retry-After"))
	s.clock.Add(time.Second)
	code, _, _ = call(t, "POST", s.url, "")
	require.Equal(t, 200, code)

	// Idle longer than it takes to refill: a full burst again, no more.
	s.clock.Add(time.Hour)
	for range httpapi.DefaultReloadBurst {
		code, _, _ = call(t, "POST", s.url, "")
		require.Equal(t, 200, code)
	}
	code, _, _ = call(t, "POST", s.url, "")
	assert.Equal(t, 429, code)
}

func TestReloadEndpointAuthorizedKeys(t *testing.T) {
	s := newReloadSetup(t)
	s.guard.Store(&httpapi.ReloadGuard{AuthorizedKeys: []tezos.PublicKey{s.clientP}})
	other, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	require.NoError(t, err)
	now := s.clock.Now().Unix()
	sigOf := func(msg []byte) string {
		sig, err := s.client.Sign(msg, tezos.SignVersion2)
		require.NoError(t, err)
		return sig.String()
	}
	for _, c := range []struct {
		name, query string
		status      int
	}{
		{"no authentication", "", 401},
		{"no timestamp", "?authentication=" + sigOf(signer.ReloadMessage(now)), 400},
		{"bad timestamp", "?timestamp=soon&authentication=x", 400},
		{"timestamp twice", fmt.Sprintf("?timestamp=%d&timestamp=%d&authentication=x", now, now), 400},
		{"unreadable signature", fmt.Sprintf("?timestamp=%d&authentication=edsigbad", now), 400},
		{"another key", signed(t, other, now), 403},
		{"Signatory's authentication message", fmt.Sprintf("?timestamp=%d&authentication=%s", now,
			sigOf(signer.AuthenticationData(s.clientP.Hash(), signer.ReloadMessage(now)))), 403},
		{"a sign request's bytes", fmt.Sprintf("?timestamp=%d&authentication=%s", now, sigOf([]byte{0x03, 0x01})), 403},
		{"stale", signed(t, s.client, now-int64(signer.ReloadAuthWindow/time.Second)-1), 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := call(t, "POST", s.url+c.query, "")
			assert.Equal(t, c.status, code, body)
		})
	}
	assert.Zero(t, s.calls.Load(), "no refused request reloads")
	good := signed(t, s.client, now)
	code, body, _ := call(t, "POST", s.url+good, "")
	require.Equal(t, 200, code, body)
	code, body, _ = call(t, "POST", s.url+good, "")
	assert.Equal(t, 401, code, "a replayed request: %s", body)
	assert.Contains(t, body, "already used")
	assert.Equal(t, int32(1), s.calls.Load())
}

func TestReloadEndpointJWT(t *testing.T) {
	s := newReloadSetup(t)
	auth, err := jwtauth.New(map[string]jwtauth.User{
		"alice": {Credentials: jwtauth.Credentials{Password: alicePassword, Secret: aliceSecret}},
	}, jwtauth.Options{})
	require.NoError(t, err)
	tok, err := auth.Login("alice", alicePassword)
	require.NoError(t, err)
	s.guard.Store(&httpapi.ReloadGuard{Auth: auth})
	for _, c := range []struct {
		name    string
		headers [][2]string
	}{
		{"no token", nil},
		{"no username", [][2]string{{"Authorization", "Bearer " + tok}}},
		{"another user", [][2]string{{"Authorization", "Bearer " + tok}, {"username", "bob"}}},
		{"tampered", [][2]string{{"Authorization", "Bearer " + tok + "x"}, {"username", "alice"}}},
		{"another scheme", [][2]string{{"Authorization", "Basic " + tok}, {"username", "alice"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := call(t, "POST", s.url, "", c.headers...)
			assert.Equal(t, 401, code, body)
		})
	}
	assert.Zero(t, s.calls.Load())
	code, body, _ := call(t, "POST", s.url, "", [2]string{"Authorization", "Bearer " + tok}, [2]string{"username", "alice"})
	require.Equal(t, 200, code, body)

	// Both configured: the token and the signature are both needed.
	s.guard.Store(&httpapi.ReloadGuard{Auth: auth, AuthorizedKeys: []tezos.PublicKey{s.clientP}})
	code, _, _ = call(t, "POST", s.url, "", [2]string{"Authorization", "Bearer " + tok}, [2]string{"username", "alice"})
	assert.Equal(t, 401, code)
	code, _, _ = call(t, "POST", s.url+signed(t, s.client, s.clock.Now().Unix()), "")
	assert.Equal(t, 401, code)
	code, body, _ = call(t, "POST", s.url+signed(t, s.client, s.clock.Now().Unix()+1), "",
		[2]string{"Authorization", "Bearer " + tok}, [2]string{"username", "alice"})
	assert.Equal(t, 200, code, body)
}
