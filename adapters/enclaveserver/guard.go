package enclaveserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain/enclave"
)

// The connection guard: what keeps the enclave server up and serving its
// daemon whatever other clients do. It is independent of the protocol
// (which is in server.go) and of the KMS:
//
//   - accept errors (EMFILE and ENFILE when descriptors run out,
//     ECONNABORTED, …) back off (5 ms doubling to 1 s) and never end Serve;
//   - at most MaxConns connections; when a new one would exceed it, the
//     oldest connection that has not sent Initialize is closed to make room,
//     and if every connection is initialized (or initializing) the new one
//     is closed at once. Initialized sessions (the daemon's, holding its
//     keys) are never evicted;
//   - a connection must complete Initialize within HandshakeTimeout of its
//     accept, a frame whose first byte arrived must arrive whole within
//     FrameTimeout, a reply must be taken within WriteTimeout, and an
//     initialized session may be closed after IdleTimeout without a request
//     (off by default: a daemon's pooled connections are idle by design,
//     and each redial costs a KMS Decrypt per key);
//   - each of these events is counted (Stats) and logged at most once per
//     LogInterval per kind, with the running total and how many lines were
//     suppressed.

// Defaults of the guard's Options.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultFrameTimeout     = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultLogInterval      = 10 * time.Second
	// DefaultMaxConnsCap bounds the default MaxConns, which is otherwise
	// the open-file limit minus reservedFiles.
	DefaultMaxConnsCap = 4096
	reservedFiles      = 64 // listeners, the KMS client's sockets, logs, the runtime's poller
	minMaxConns        = 16
)

// defaultMaxConns is the connection cap when Options.MaxConns is 0: what
// the open-file limit leaves after reservedFiles, within [minMaxConns,
// DefaultMaxConnsCap].
func defaultMaxConns() int {
	n := openFileLimit() - reservedFiles
	return min(max(n, minMaxConns), DefaultMaxConnsCap)
}

// Session phases, for eviction.
const (
	phaseNew          int32 = iota // no Initialize received: may be evicted
	phaseInitializing              // an Initialize is being handled
	phaseInitialized               // holds a KMS session and keys: never evicted
)

// Stats are the server's counters since it started.
type Stats struct {
	Accepted int64 // connections accepted (evicted and refused ones included)
	Active   int64 // connections open now
	// Requests counts requests by protocol method (Initialize, Import, …).
	Requests map[string]int64
	// KMSCalls counts seals and opens (Cloud KMS Encrypt and Decrypt with
	// --kms gcp).
	KMSCalls int64

	Refused           int64 // closed at once: at MaxConns, nothing to evict
	Evicted           int64 // uninitialized connections closed to make room
	HandshakeTimeouts int64 // no Initialize (on the attested channel: no TLS handshake, then no Initialize) within HandshakeTimeout
	FrameTimeouts     int64 // a frame not whole within FrameTimeout
	IdleTimeouts      int64 // an initialized session idle for IdleTimeout
	WriteTimeouts     int64 // a reply not taken within WriteTimeout
	AcceptErrors      int64 // failed accepts (each followed by a backoff)
	// HandshakesRefused counts attested channel handshakes that failed
	// other than by timing out: a client whose key is not pinned, one
	// that does not speak TLS 1.3 or the channel's protocol, or no valid
	// attestation token to show.
	HandshakesRefused int64
}

// serverStats are the live counters behind Stats.
type serverStats struct {
	accepted                                                atomic.Int64
	refused, evicted, handshake, frame, idle, write, accept atomic.Int64
	handshakeRefused                                        atomic.Int64
	requests                                                [len(methods)]atomic.Int64
}

// methods are the protocol's request names, indexing serverStats.requests.
var methods = [...]string{"Initialize", "Import", "ImportUnencrypted", "Generate", "GenerateAndImport",
	"Sign", "SignWith", "PublicKey", "PublicKeyFrom", "ProvePossession", "AttestationToken"}

func (st *serverStats) request(method string) {
	for i, m := range methods {
		if m == method {
			st.requests[i].Add(1)
			return
		}
	}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := int64(len(s.sessions))
	s.mu.Unlock()
	st := &s.stats
	out := Stats{
		Accepted: st.accepted.Load(), Active: active, KMSCalls: s.opts.Enclave.KMSCalls(),
		Refused: st.refused.Load(), Evicted: st.evicted.Load(), HandshakeTimeouts: st.handshake.Load(),
		FrameTimeouts: st.frame.Load(), IdleTimeouts: st.idle.Load(), WriteTimeouts: st.write.Load(),
		AcceptErrors: st.accept.Load(), HandshakesRefused: st.handshakeRefused.Load(), Requests: map[string]int64{},
	}
	for i, m := range methods {
		if n := st.requests[i].Load(); n > 0 {
			out.Requests[m] = n
		}
	}
	return out
}

// LogAttrs returns the counters as log attributes, requests counted per
// method as requests_<method in snake_case>.
func (st Stats) LogAttrs() []slog.Attr {
	r := st.Requests
	return []slog.Attr{
		slog.Int64("accepted", st.Accepted), slog.Int64("active", st.Active), slog.Int64("kms_calls", st.KMSCalls),
		slog.Int64("refused", st.Refused), slog.Int64("evicted", st.Evicted), slog.Int64("handshake_timeouts", st.HandshakeTimeouts),
		slog.Int64("frame_timeouts", st.FrameTimeouts), slog.Int64("idle_timeouts", st.IdleTimeouts),
		slog.Int64("write_timeouts", st.WriteTimeouts), slog.Int64("accept_errors", st.AcceptErrors),
		slog.Int64("requests_initialize", r["Initialize"]), slog.Int64("requests_import", r["Import"]),
		slog.Int64("requests_import_unencrypted", r["ImportUnencrypted"]), slog.Int64("requests_generate", r["Generate"]),
		slog.Int64("requests_generate_and_import", r["GenerateAndImport"]), slog.Int64("requests_sign", r["Sign"]),
		slog.Int64("requests_sign_with", r["SignWith"]), slog.Int64("requests_public_key", r["PublicKey"]),
		slog.Int64("requests_public_key_from", r["PublicKeyFrom"]), slog.Int64("requests_prove_possession", r["ProvePossession"]),
		slog.Int64("requests_attestation_token", r["AttestationToken"]), slog.Int64("handshakes_refused", st.HandshakesRefused),
	}
}

// acceptLoop accepts connections on l until the server closes, admitting
// each within the connection cap; with hs, each connection is the attested
// channel (its handshake runs on the session's goroutine, under the
// handshake deadline). Accept errors back off and never end it; only a
// closed listener does.
func (s *Server) acceptLoop(l net.Listener, hs Handshaker) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			n := s.stats.accept.Add(1)
			s.rl.warn(s.log, "accept", n, "accepting a connection failed; backing off", slog.String("error", err.Error()), slog.String("backoff", delay.String()))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		s.stats.accepted.Add(1)
		sess := &session{srv: s, raw: c, conn: c, hs: hs, accepted: time.Now()}
		if hs == nil {
			sess.dom.Store(s.opts.Enclave.NewSession(enclave.Channel{}))
		}
		if !s.admit(sess) {
			continue
		}
		go func() {
			defer s.wg.Done()
			sess.serve()
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
		}()
	}
}

// admit registers sess, making room under MaxConns by closing the oldest
// uninitialized connection if needed; it reports false (and closes the
// connection) when the server is closed or nothing can be evicted.
func (s *Server) admit(sess *session) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sess.raw.Close()
		return false
	}
	var victim *session
	if len(s.sessions) >= s.opts.MaxConns {
		for o := range s.sessions {
			if o.phase.Load() == phaseNew && !o.evicted.Load() && (victim == nil || o.accepted.Before(victim.accepted)) {
				victim = o
			}
		}
		if victim == nil {
			s.mu.Unlock()
			n := s.stats.refused.Add(1) // counted before the client can see it
			sess.raw.Close()
			s.rl.warn(s.log, "refused", n, "connection limit reached and every connection is initialized: new connection closed", slog.Int("max_conns", s.opts.MaxConns))
			return false
		}
		victim.evicted.Store(true)
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	if victim != nil {
		n := s.stats.evicted.Add(1)
		victim.raw.Close()
		s.rl.warn(s.log, "evicted", n, "connection limit reached: closed the oldest connection that had not initialized", slog.Int("max_conns", s.opts.MaxConns), slog.String("remote", victim.raw.RemoteAddr().String()))
	}
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// readRequest reads one request frame under the guard's deadlines. A
// timeout is counted and logged, and returned as an error that ends the
// session. The first read takes whatever has arrived (a whole request, as
// a rule), so that a request costs one read and no deadline change.
func (c *session) readRequest() ([]byte, error) {
	o := &c.srv.opts
	in := &c.in
	if in.conn == nil {
		in.conn, in.buf = c.conn, make([]byte, 4096)
	}
	// Waiting for a frame's first byte: the handshake deadline before
	// Initialize, the idle timeout after (none by default).
	if in.w == in.r {
		var wait time.Time
		waitKind := ""
		if c.phase.Load() != phaseInitialized {
			wait, waitKind = c.accepted.Add(o.HandshakeTimeout), "handshake"
		} else if o.IdleTimeout > 0 {
			wait, waitKind = time.Now().Add(o.IdleTimeout), "idle"
		}
		if err := in.fill(wait); err != nil {
			if isTimeout(err) {
				c.srv.timedOut(waitKind, c)
			}
			return nil, err
		}
	}
	// The rest of the frame: whole within FrameTimeout of its first byte.
	frame, err := in.frame(o.MaxFrame, time.Now().Add(o.FrameTimeout))
	if err != nil && isTimeout(err) {
		c.srv.timedOut("frame", c)
	}
	return frame, err
}

// frameReader reads frames from a connection through one buffer, setting
// the read deadline only when it changes. Consumed bytes are zeroed (a
// request may hold a plain private key).
type frameReader struct {
	conn     net.Conn
	buf      []byte
	r, w     int
	deadline time.Time // the connection's read deadline now
}

func (f *frameReader) setDeadline(t time.Time) {
	if !t.Equal(f.deadline) {
		_ = f.conn.SetReadDeadline(t)
		f.deadline = t
	}
}

// fill reads once into the free part of the buffer, waiting until dl.
func (f *frameReader) fill(dl time.Time) error {
	if f.r == f.w {
		clear(f.buf[:f.w])
		f.r, f.w = 0, 0
	}
	f.setDeadline(dl)
	n, err := f.conn.Read(f.buf[f.w:])
	f.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// frame returns the next frame, reading what is missing until dl.
func (f *frameReader) frame(max int, dl time.Time) ([]byte, error) {
	for f.w-f.r < 4 {
		if f.w == len(f.buf) { // the header straddles the end: compact
			copy(f.buf, f.buf[f.r:f.w])
			clear(f.buf[f.w-f.r : f.w])
			f.w -= f.r
			f.r = 0
		}
		if err := f.fill(dl); err != nil {
			return nil, eofInFrame(err)
		}
	}
	n := binary.BigEndian.Uint32(f.buf[f.r:])
	if n == 0 {
		return nil, enclavewire.ErrEmptyFrame
	}
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", enclavewire.ErrFrameTooLarge, n, max)
	}
	f.r += 4
	out := make([]byte, n)
	got := copy(out, f.buf[f.r:f.w])
	clear(f.buf[f.r : f.r+got])
	f.r += got
	if got < len(out) {
		f.setDeadline(dl)
		if _, err := io.ReadFull(f.conn, out[got:]); err != nil {
			clear(out)
			return nil, eofInFrame(err)
		}
	}
	if f.r == f.w {
		f.r, f.w = 0, 0
	}
	return out, nil
}

func eofInFrame(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeReply writes one reply frame: a client that does not take it
// within WriteTimeout loses the connection. The write deadline is moved
// only when less than half of WriteTimeout is left, not at every reply.
func (c *session) writeReply(reply []byte) error {
	wt := c.srv.opts.WriteTimeout
	if now := time.Now(); c.wdl.Sub(now) < wt/2 {
		c.wdl = now.Add(wt)
		_ = c.conn.SetWriteDeadline(c.wdl)
	}
	err := enclavewire.WriteFrame(c.conn, reply)
	if err != nil && isTimeout(err) {
		c.srv.timedOut("write", c)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// timedOut counts and logs a guard timeout of kind (handshake,
// tls_handshake, idle, frame, write).
func (s *Server) timedOut(kind string, c *session) {
	var n int64
	var msg string
	switch kind {
	case "handshake":
		n, msg = s.stats.handshake.Add(1), fmt.Sprintf("closing a connection that sent no Initialize within %v", s.opts.HandshakeTimeout)
	case "tls_handshake": // counted with the handshake timeouts, logged apart
		n, msg = s.stats.handshake.Add(1), fmt.Sprintf("closing a connection that did not complete the attested channel's TLS handshake within %v", s.opts.HandshakeTimeout)
	case "idle":
		n, msg = s.stats.idle.Add(1), fmt.Sprintf("closing a session idle for %v", s.opts.IdleTimeout)
	case "frame":
		n, msg = s.stats.frame.Add(1), fmt.Sprintf("closing a connection whose frame did not arrive whole within %v", s.opts.FrameTimeout)
	case "write":
		n, msg = s.stats.write.Add(1), fmt.Sprintf("closing a connection that did not take its reply within %v", s.opts.WriteTimeout)
	default:
		return
	}
	s.rl.warn(s.log, kind, n, msg, slog.String("remote", c.raw.RemoteAddr().String()))
}

// handshakeRefused counts and logs (rate-limited) a refused attested
// handshake; the error names why (the client's pin when it is not pinned).
func (s *Server) handshakeRefused(c *session, err error) {
	n := s.stats.handshakeRefused.Add(1)
	msg := "attested channel: handshake refused"
	if strings.Contains(err.Error(), "remote error: tls:") {
		// The client's alert: it refused the enclave, and knows why.
		msg = "attested channel: handshake refused by the client (it did not accept the enclave's token or certificate; a Sigil daemon logs the claim)"
	}
	s.rl.warn(s.log, "handshake_refused", n, msg,
		slog.String("remote", c.raw.RemoteAddr().String()), slog.String("error", err.Error()))
}

// rateLog logs at most one line per kind per interval, with the running
// total and the number of lines suppressed since the last one.
type rateLog struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	skipped  map[string]int64
}

func (r *rateLog) warn(log *slog.Logger, kind string, total int64, msg string, attrs ...slog.Attr) {
	r.mu.Lock()
	now := time.Now()
	if t, ok := r.last[kind]; ok && now.Sub(t) < r.interval {
		r.skipped[kind]++
		r.mu.Unlock()
		return
	}
	if r.last == nil {
		r.last, r.skipped = map[string]time.Time{}, map[string]int64{}
	}
	skipped := r.skipped[kind]
	r.last[kind], r.skipped[kind] = now, 0
	r.mu.Unlock()
	log.LogAttrs(context.Background(), slog.LevelWarn, msg, append(attrs, slog.Int64("total", total), slog.Int64("suppressed", skipped))...)
}
