package enclaveserver

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
)

// Short guard timeouts: the tests stay idle longer than each, and cross
// each.
const (
	handshake = 150 * time.Millisecond
	frameTO   = 150 * time.Millisecond
	writeTO   = 150 * time.Millisecond
)

// lockedBuf is a log sink safe for concurrent use.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func guarded(t *testing.T, mod func(*Options)) (*Server, string, *lockedBuf) {
	t.Helper()
	var logs lockedBuf
	o := Options{HandshakeTimeout: handshake, FrameTimeout: frameTO, WriteTimeout: writeTO, LogInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if mod != nil {
		mod(&o)
	}
	s, addr := start(t, o)
	return s, addr, &logs
}

// closedWithin waits until the server closes c (a read returns EOF or an
// error), failing after d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open for %v", d)
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHandshakeTimeout: a connection that sends nothing, or only part of a
// frame, or anything but a successful Initialize, is closed once the
// handshake deadline passes; each is counted, and logged once per kind.
func TestHandshakeTimeout(t *testing.T) {
	s, addr, logs := guarded(t, nil)
	silent := dialRaw(t, addr)
	junk := wiretest.Dial(t, addr)
	var tg enclavewire.Tagged
	require.EqualError(t, junk.Call(enclavewire.NewSign(0, []byte("x"), 2), &tg), "uninitialized") // answered, but no Initialize
	closedWithin(t, silent, 10*handshake)
	require.Eventually(t, func() bool { return s.Stats().HandshakeTimeouts == 2 }, 10*handshake, 5*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "sent no Initialize") }, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "sent no Initialize"), "rate-limited: %s", logs.String())
	require.Contains(t, logs.String(), "total=")
	require.Eventually(t, func() bool { return s.Stats().Active == 0 }, 5*time.Second, time.Millisecond)
}

// TestFrameTimeout: an initialized session that sends four header bytes (or
// a header and part of the payload) and stops is closed after FrameTimeout.
func TestFrameTimeout(t *testing.T) {
	s, addr, logs := guarded(t, nil)
	for _, partial := range [][]byte{{0, 0, 0, 40}, {0, 0, 0, 40, 0xa1, 0x64}} {
		c := dialRaw(t, addr)
		p, err := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
		require.NoError(t, err)
		require.NoError(t, enclavewire.WriteFrame(c, p))
		_, err = enclavewire.ReadFrame(c, 0)
		require.NoError(t, err)
		_, err = c.Write(partial)
		require.NoError(t, err)
		closedWithin(t, c, 10*frameTO)
	}
	require.EqualValues(t, 2, s.Stats().FrameTimeouts)
	require.Zero(t, s.Stats().HandshakeTimeouts)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "did not arrive whole") }, 5*time.Second, time.Millisecond)
}

// TestInitializedSessionIdlesForever: with the default IdleTimeout (none),
// an initialized session idle for many times every other timeout is still
// served; with an IdleTimeout it is closed after it.
func TestInitializedSessionIdlesForever(t *testing.T) {
	s, addr, _ := guarded(t, nil)
	c := wiretest.Dial(t, addr)
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
	time.Sleep(5 * (handshake + frameTO + writeTO))
	var tg enclavewire.Tagged
	require.NoError(t, c.Call(enclavewire.NewSign(gi.Handle, []byte("\x03after a long idle"), 2), &tg))
	st := s.Stats()
	require.Zero(t, st.HandshakeTimeouts+st.FrameTimeouts+st.IdleTimeouts+st.WriteTimeouts)

	s2, addr2, logs := guarded(t, func(o *Options) { o.IdleTimeout = 100 * time.Millisecond })
	c2 := dialRaw(t, addr2)
	p, _ := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
	require.NoError(t, enclavewire.WriteFrame(c2, p))
	_, err := enclavewire.ReadFrame(c2, 0)
	require.NoError(t, err)
	closedWithin(t, c2, 20*100*time.Millisecond)
	require.EqualValues(t, 1, s2.Stats().IdleTimeouts)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "idle for 100ms") }, 5*time.Second, time.Millisecond)
}

// TestWriteTimeout: a client that sends requests and never reads the
// replies is dropped once a reply cannot be written for WriteTimeout.
func TestWriteTimeout(t *testing.T) {
	s, addr, _ := guarded(t, nil)
	c := dialRaw(t, addr)
	p, _ := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
	require.NoError(t, enclavewire.WriteFrame(c, p))
	_, err := enclavewire.ReadFrame(c, 0)
	require.NoError(t, err)
	// Requests whose replies (errors: no key) are never read, until the
	// socket buffers are full and the server gives up.
	req, _ := enclavewire.EncodeRequest(enclavewire.NewPublicKeyFrom(bytes.Repeat([]byte{1}, 64)))
	go func() {
		for range 200000 {
			if enclavewire.WriteFrame(c, req) != nil {
				return
			}
		}
	}()
	require.Eventually(t, func() bool { return s.Stats().WriteTimeouts == 1 }, 30*time.Second, 10*time.Millisecond)
}

// TestConnectionCap: at MaxConns, the oldest connection that has not
// initialized makes room for a new one; initialized sessions are never
// evicted, and when every connection is initialized a new one is closed at
// once. Both counted.
func TestConnectionCap(t *testing.T) {
	s, addr, logs := guarded(t, func(o *Options) { o.MaxConns = 3; o.HandshakeTimeout = time.Minute })
	var sessions []*wiretest.Client
	for range 2 {
		c := wiretest.Dial(t, addr)
		require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
		sessions = append(sessions, c)
	}
	oldest := dialRaw(t, addr)
	require.Eventually(t, func() bool { return s.Stats().Active == 3 }, 5*time.Second, time.Millisecond)
	newer := dialRaw(t, addr) // evicts oldest
	closedWithin(t, oldest, 5*time.Second)
	require.EqualValues(t, 1, s.Stats().Evicted)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "closed the oldest connection that had not initialized")
	}, 5*time.Second, time.Millisecond)

	// newer initializes: every connection is now initialized.
	p, _ := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
	require.NoError(t, enclavewire.WriteFrame(newer, p))
	_, err := enclavewire.ReadFrame(newer, 0)
	require.NoError(t, err)
	refused := dialRaw(t, addr)
	closedWithin(t, refused, 5*time.Second)
	require.EqualValues(t, 1, s.Stats().Refused)
	for _, c := range sessions {
		var gi enclavewire.GenerateAndImportResult
		require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi), "an initialized session was disturbed")
	}
}

// flakyListener fails its first n accepts with err, then accepts.
type flakyListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAcceptErrorsBackOff: accept failing with EMFILE (and other errors)
// backs off and serving goes on; Serve ends only when the listener is
// closed (and after Close with ErrServerClosed).
func TestAcceptErrorsBackOff(t *testing.T) {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, errors.New("accept4: something else")} {
		t.Run(e.Error(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			var logs lockedBuf
			s := newServer(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), LogInterval: time.Hour})
			fl := &flakyListener{Listener: ln, n: 6, err: &net.OpError{Op: "accept", Net: "tcp", Err: e}}
			done := make(chan error, 1)
			go func() { done <- s.Serve(fl) }()
			c := wiretest.Dial(t, ln.Addr().String())
			require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
			require.EqualValues(t, 6, s.Stats().AcceptErrors)
			require.Equal(t, 1, strings.Count(logs.String(), "accepting a connection failed"), "rate-limited: %s", logs.String())
			select {
			case err := <-done:
				t.Fatalf("Serve returned %v", err)
			default:
			}
			s.Close()
			require.ErrorIs(t, <-done, ErrServerClosed)
		})
	}
}

// TestDefaultMaxConns follows the open-file limit.
func TestDefaultMaxConns(t *testing.T) {
	n := defaultMaxConns()
	require.GreaterOrEqual(t, n, minMaxConns)
	require.LessOrEqual(t, n, DefaultMaxConnsCap)
	require.LessOrEqual(t, n, max(openFileLimit()-reservedFiles, minMaxConns))
	require.Equal(t, n, newServer(t, Options{}).Options().MaxConns)
}
