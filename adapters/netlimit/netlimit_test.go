package netlimit

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a log buffer safe for the listener's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve accepts on l, keeps every connection open until it is closed by
// the peer, and counts what it accepted.
func serve(t *testing.T, l net.Listener) *int64 {
	var n int64
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return &n
}

// dialFrom connects to addr from the local address ip (any 127/8 address
// is this host's loopback).
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	return c
}

// closedByServer reports whether the server closed c (EOF within d).
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !strings.Contains(err.Error(), "timeout")
}

// One address gets at most its cap of connections: the next ones are
// closed at once; another address is unaffected; a closed connection frees
// its slot; refusals are logged once, then summed per window.
func TestPerClientCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var logs syncBuffer
	l := Wrap(raw, 3, "server.address", slog.New(slog.NewTextHandler(&logs, nil)))
	defer l.Close()
	serve(t, l)
	addr := raw.Addr().String()

	var held []net.Conn
	for range 3 {
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	require.Eventually(t, func() bool { return l.Open("127.0.0.1") == 3 }, 5*time.Second, 10*time.Millisecond)
	for range 5 {
		c := dialFrom(t, "127.0.0.1", addr)
		assert.True(t, closedByServer(c, 2*time.Second), "a connection over the cap was kept")
		c.Close()
	}
	other := dialFrom(t, "127.0.0.2", addr)
	assert.False(t, closedByServer(other, 200*time.Millisecond), "another address was refused")
	other.Close()

	held[0].Close()
	require.Eventually(t, func() bool { return l.Open("127.0.0.1") == 2 }, 5*time.Second, 10*time.Millisecond)
	again := dialFrom(t, "127.0.0.1", addr)
	assert.False(t, closedByServer(again, 200*time.Millisecond), "a freed slot was not reused")
	again.Close()
	for _, c := range held[1:] {
		c.Close()
	}

	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "connection refused: the client address holds its maximum"), "one line at once, not one per refusal:\n%s", out)
	assert.Contains(t, out, "client=127.0.0.1")
	assert.NotContains(t, out, "client=127.0.0.2")
}

// The count of a window's other refusals is logged when it ends (the
// window is crossed: 10 s).
func TestRefusalsSummed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 10 s window")
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var logs syncBuffer
	l := Wrap(raw, 1, "server.address", slog.New(slog.NewTextHandler(&logs, nil)))
	defer l.Close()
	serve(t, l)
	hold := dialFrom(t, "127.0.0.1", raw.Addr().String())
	defer hold.Close()
	require.Eventually(t, func() bool { return l.Open("127.0.0.1") == 1 }, 5*time.Second, 10*time.Millisecond)
	for range 4 {
		c := dialFrom(t, "127.0.0.1", raw.Addr().String())
		closedByServer(c, 2*time.Second)
		c.Close()
	}
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "connections refused, repeated") }, Window+5*time.Second, 100*time.Millisecond)
	assert.Contains(t, logs.String(), "refused=3")
}
