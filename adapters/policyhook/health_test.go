package policyhook_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/policyhook"
	"github.com/sigil-signer/sigil/domain"
)

// The hook's client follows no proxy: with HTTP_PROXY and HTTPS_PROXY set
// in the daemon's environment, a call goes to the configured address, never
// to the proxy (which could approve every request). Go reads the proxy
// variables once per process, so the check runs in a fresh process with
// them set.
func TestHookIgnoresProxyEnvironment(t *testing.T) {
	if os.Getenv("SIGIL_POLICYHOOK_PROXY_CHILD") == "1" {
		proxyHookChild(t)
		return
	}
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		w.WriteHeader(http.StatusOK) // a proxy that approves everything
	}))
	defer proxy.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHookIgnoresProxyEnvironment$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SIGIL_POLICYHOOK_PROXY_CHILD=1",
		"HTTP_PROXY="+proxy.URL, "HTTPS_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "https_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Zero(t, proxied.Load(), "the hook's request went through HTTP_PROXY")
}

// proxyHookChild calls a hook at a name that only a proxy could resolve
// (.invalid never resolves): direct, the call fails as unreachable; through
// the proxy it would be approved.
func proxyHookChild(t *testing.T) {
	h, err := policyhook.New(policyhook.Config{Address: "http://sigil-policy-hook.invalid/approve", Timeout: 5 * time.Second})
	require.NoError(t, err)
	err = h.Approve(context.Background(), hookRequest())
	require.Error(t, err, "approved: the request went through the proxy")
	assert.Contains(t, err.Error(), "unreachable")
}

// Healthy connects to the hook's address without sending a request: nil
// while it accepts connections, an error while it is down, and nil again
// once it is back; an https hook must also complete a TLS handshake. The
// probe never reaches the hook's handler.
func TestHookHealthy(t *testing.T) {
	ctx := context.Background()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	addr := srv.Listener.Addr().String()
	h := newHook(t, srv.URL+"/approve", nil, time.Second)
	require.NoError(t, h.Healthy(ctx))

	srv.Close()
	err := h.Healthy(ctx)
	require.Error(t, err, "a hook that is down is not healthy")
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	assert.Contains(t, err.Error(), "policy hook unreachable")

	// Back on the same address.
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	back := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	back.Listener.Close()
	back.Listener = ln
	back.Start()
	defer back.Close()
	require.NoError(t, h.Healthy(ctx))
	assert.Zero(t, requests.Load(), "the probe sent the hook a request")

	// https: the handshake must succeed with the transport's roots; a
	// plain TCP listener on an https address is not healthy.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	defer tlsSrv.Close()
	hs, err := policyhook.New(policyhook.Config{Address: tlsSrv.URL + "/approve", Transport: tlsSrv.Client().Transport})
	require.NoError(t, err)
	require.NoError(t, hs.Healthy(ctx))
	plain, err := policyhook.New(policyhook.Config{Address: "https://" + back.Listener.Addr().String() + "/approve", Transport: tlsSrv.Client().Transport})
	require.NoError(t, err)
	err = plain.Healthy(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "TLS handshake failed")
	assert.Zero(t, requests.Load(), "the probe sent the hook a request")

	// A listener that accepts but never answers the handshake is bounded
	// by the hook's timeout (here 300 ms), not the caller's patience.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hsilent, err := policyhook.New(policyhook.Config{Address: "https://" + silent.Addr().String() + "/", Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- hsilent.Healthy(ctx) }()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the probe of a silent TLS listener did not end")
	}
}
