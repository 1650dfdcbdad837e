package enclaverpc_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Short timeouts: the tests stay idle many times longer than each (yet
// long enough for a BLS key generation on a loaded machine).
const (
	rpcTimeout = 250 * time.Millisecond
	idleProbe  = 10 * time.Millisecond
	idleFor    = 6 * rpcTimeout // 150 idle probes
)

// server is a mock enclave on a loopback address, restartable there with
// the same KMS key.
type server struct {
	t       *testing.T
	kmsFile string
	addr    string
	srv     *enclaveserver.Server
}

func startServer(t *testing.T) *server {
	s := &server{t: t, kmsFile: filepath.Join(t.TempDir(), "kms.key"), addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *server) start() {
	kms, err := localstandin.New(s.kmsFile)
	require.NoError(s.t, err)
	var ln net.Listener
	for range 100 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(s.t, err)
	s.addr = ln.Addr().String()
	s.srv = enclavetest.NewServer(s.t, enclavetest.ServerOptions{KMS: kms})
	go func() { _ = s.srv.Serve(ln) }()
}

func (s *server) restart() {
	s.srv.Close()
	s.start()
}

// logs records log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(b)))
	return len(b), nil
}

func (l *logs) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

func (l *logs) since(i int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines[i:]...)
}

func (l *logs) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// rpcLog records the client's requests on the wire.
type rpcLog struct {
	mu     sync.Mutex
	events []ports.EnclaveRPCEvent
}

func (r *rpcLog) ObserveEnclaveRPC(e ports.EnclaveRPCEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *rpcLog) count(method, failure string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Method == method && e.Failure == failure {
			n++
		}
	}
	return n
}

func newClient(t *testing.T, addr string, conns int, l *logs) *enclaverpc.Client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := enclaverpc.New(enclaverpc.Config{
		Name: "test", Addr: addr, Dial: enclaverpc.TCPDialer(addr),
		Initialize: func(context.Context) (*enclavewire.Request, error) {
			return enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "w", EncryptionKeyPath: "k"}), nil
		},
		Connections: conns, DialTimeout: time.Second, RPCTimeout: rpcTimeout, IdleProbe: idleProbe, LogState: true,
	}, log)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// generate makes n keys (all types in turn) and waits until every
// connection holds every one.
func generate(t *testing.T, c *enclaverpc.Client, n int) []tezos.PublicKey {
	t.Helper()
	var keys []tezos.PublicKey
	for i := range n {
		s, err := c.Generate(ctxT(t), tezos.KeyTypes[i%len(tezos.KeyTypes)])
		require.NoError(t, err)
		keys = append(keys, s.PublicKey)
	}
	waitHeld(t, c, keys)
	return keys
}

func waitHeld(t *testing.T, c *enclaverpc.Client, keys []tezos.PublicKey) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, k := range keys {
			if c.ConnectionsHolding(k.Hash()) != c.Size() {
				return false
			}
		}
		return c.Ready(context.Background()) == nil
	}, 20*time.Second, 5*time.Millisecond)
}

// quiet is what must not move while the link is idle.
type quiet struct {
	accepted, initialize, imports, kms int64
	redials                            uint64
	logLines                           int
}

func reading(s *server, c *enclaverpc.Client, l *logs) quiet {
	st := s.srv.Stats()
	return quiet{st.Accepted, st.Requests["Initialize"], st.Requests["Import"], st.KMSCalls, c.PoolStats().Redials, l.len()}
}

func signAll(t *testing.T, c *enclaverpc.Client, keys []tezos.PublicKey, msg []byte) {
	t.Helper()
	for _, k := range keys {
		sig, err := c.Sign(ctxT(t), k.Hash(), msg, tezos.SignVersionLatest)
		require.NoError(t, err, k.Hash().String())
		require.NoError(t, enclavetest.Verify(k, msg, sig, tezos.SignVersionLatest))
	}
}

// TestIdleLinkIsFree: once every connection holds every key, a client left
// alone for 6 × rpc_timeout (the deadline of its last request long
// expired) and 150 idle probes costs nothing: no connection, no
// Initialize, no Import, no KMS call, no redial, no log line. Requests
// afterwards are served by the same connections.
func TestIdleLinkIsFree(t *testing.T) {
	s := startServer(t)
	var l logs
	c := newClient(t, s.addr, 4, &l)
	keys := generate(t, c, 12)
	signAll(t, c, keys, []byte("\x03before")) // every connection's deadline now set
	before := reading(s, c, &l)

	time.Sleep(idleFor)

	require.Equal(t, before, reading(s, c, &l), "the idle link was not free; log: %v", l.since(before.logLines))
	signAll(t, c, keys, []byte("\x03after"))
	after := reading(s, c, &l)
	require.Equal(t, before.accepted, after.accepted)
	require.Equal(t, before.imports, after.imports)
	require.Equal(t, before.redials, after.redials)
}

// TestEnclaveRestartReimportsOnce crosses each expiry for real: the enclave
// restarts while the client is idle; every connection notices, redials and
// imports each key exactly once, the pool logs the loss and the recovery
// once each, and then it is idle and free again.
func TestEnclaveRestartReimportsOnce(t *testing.T) {
	s := startServer(t)
	var l logs
	c := newClient(t, s.addr, 4, &l)
	keys := generate(t, c, 10)
	redials := c.PoolStats().Redials

	s.restart()
	require.Eventually(t, func() bool {
		st := s.srv.Stats()
		return st.Requests["Import"] == int64(len(keys)*c.Size()) && c.Ready(context.Background()) == nil
	}, 20*time.Second, 5*time.Millisecond)
	settled := reading(s, c, &l)
	time.Sleep(idleFor)
	require.Equal(t, settled, reading(s, c, &l), "more work after the restart: %v", l.since(settled.logLines))

	st := s.srv.Stats()
	require.EqualValues(t, c.Size(), st.Accepted, "one connection per slot")
	require.EqualValues(t, c.Size(), st.Requests["Initialize"])
	require.EqualValues(t, len(keys)*c.Size(), st.Requests["Import"], "one import per key per connection")
	require.EqualValues(t, len(keys)*c.Size(), st.KMSCalls)
	require.GreaterOrEqual(t, c.PoolStats().Redials, redials+uint64(c.Size()))
	require.Equal(t, 1, l.count("enclave connection lost"), "%v", l.since(0))
	require.Equal(t, 1, l.count("enclave connection restored"), "%v", l.since(0))
	signAll(t, c, keys, []byte("\x03after restart"))
}

// TestBytesNobodyAskedForPoisonTheConnection: a frame arriving on an idle
// connection (or left over from a duplicated reply) is found before the
// next request is written; the connection is replaced, the request is
// served, and the event is counted and logged.
func TestBytesNobodyAskedForPoisonTheConnection(t *testing.T) {
	s := startServer(t)
	p := enclavetest.StartProxy(t, s.addr)
	var l logs
	c := newClient(t, p.Addr, 2, &l)
	var rl rpcLog
	c.SetRPCObserver(&rl)
	keys := generate(t, c, 2)
	redials := c.PoolStats().Redials

	ok, _ := enclavewire.EncodeOk(enclavewire.Tagged{Type: enclavewire.KeyEd25519, Bytes: make([]byte, 64)})
	require.Equal(t, 2, p.Inject(ok))
	// Found by the idle probe or by the next request's peek, whichever
	// comes first; either way no request sees the frame.
	signAll(t, c, keys, []byte("\x03after injection"))
	require.Eventually(t, func() bool { return c.PoolStats().Redials >= redials+2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 2, l.count("enclave connection poisoned"), "%v", l.since(0))
	require.Equal(t, 2, rl.count("none", ports.EnclaveFailureUnsolicited)+rl.count("Sign", ports.EnclaveFailureUnsolicited))
	waitHeld(t, c, keys)

	// A duplicated reply: the extra copy waits on the connection and is
	// found before the next request goes out on it.
	p.Arm(enclavetest.Duplicate, 1)
	for i := range 6 {
		msg := []byte{3, byte(i)}
		sig, err := c.Sign(ctxT(t), keys[0].Hash(), msg, tezos.SignVersionLatest)
		require.NoError(t, err)
		require.NoError(t, enclavetest.Verify(keys[0], msg, sig, tezos.SignVersionLatest))
	}
	require.EqualValues(t, 1, p.Applied())
	require.Eventually(t, func() bool { return l.count("enclave connection poisoned") == 3 }, 10*time.Second, 5*time.Millisecond)
}

// generatePairs makes two keys of each type, in that order (handles 2i
// and 2i+1 of a connection are of the same type).
func generatePairs(t *testing.T, c *enclaverpc.Client) []tezos.PublicKey {
	t.Helper()
	var keys []tezos.PublicKey
	for _, kt := range tezos.KeyTypes {
		for range 2 {
			s, err := c.Generate(ctxT(t), kt)
			require.NoError(t, err)
			keys = append(keys, s.PublicKey)
		}
	}
	waitHeld(t, c, keys)
	return keys
}

// TestMalformedReplyIsRetriedOnce: a reply of the wrong type (a signature
// of another key type) breaks the connection and the request is sent once
// more, on another connection, where it succeeds.
func TestMalformedReplyIsRetriedOnce(t *testing.T) {
	s := startServer(t)
	p := enclavetest.StartProxy(t, s.addr)
	var l logs
	c := newClient(t, p.Addr, 2, &l)
	var rl rpcLog
	c.SetRPCObserver(&rl)
	keys := generate(t, c, 2) // an Ed25519 key (handle 0) and a secp256k1 key (handle 1)
	p.Arm(enclavetest.OtherKey, 1)
	msg := []byte("\x03retried")
	sig, err := c.Sign(ctxT(t), keys[0].Hash(), msg, tezos.SignVersionLatest)
	require.NoError(t, err)
	require.NoError(t, enclavetest.Verify(keys[0], msg, sig, tezos.SignVersionLatest))
	require.EqualValues(t, 1, p.Applied())
	require.Equal(t, 1, rl.count("Sign", ports.EnclaveFailureMalformed))
}

// TestSignaturesAreVerified: every way a Sign reply can carry a signature
// that is not the key's over this message is refused as an enclave fault
// (unavailable, ErrEnclaveBadSignature or malformed), never returned; the
// connection is replaced and signing recovers.
func TestSignaturesAreVerified(t *testing.T) {
	s := startServer(t)
	p := enclavetest.StartProxy(t, s.addr)
	var l logs
	c := newClient(t, p.Addr, 1, &l)
	var rl rpcLog
	c.SetRPCObserver(&rl)
	keys := generatePairs(t, c) // another key of the same type is handle^1
	for _, f := range []enclavetest.Fault{enclavetest.Stale, enclavetest.OtherKey, enclavetest.WrongBytes, enclavetest.ExtraFrame} {
		t.Run(f.String(), func(t *testing.T) {
			for _, k := range keys {
				signAll(t, c, []tezos.PublicKey{k}, []byte("\x03warm up"))
				p.Arm(f, 1)
				msg := []byte("\x03the message " + f.String())
				sig, err := c.Sign(ctxT(t), k.Hash(), msg, tezos.SignVersionLatest)
				require.Error(t, err, "%v: %v accepted a signature", k.Type, f)
				require.Zero(t, sig.Bytes)
				require.Equal(t, domain.KindUnavailable, domain.KindOf(err), "%v", err)
				require.ErrorIs(t, err, ports.ErrEnclaveBadSignature, "%v", err)
				// Recovers on a new connection.
				waitHeld(t, c, keys)
				signAll(t, c, keys, []byte("\x03after "+f.String()))
			}
		})
	}
	require.Positive(t, rl.count("Sign", ports.EnclaveFailureBadSignature))
}

// TestRequestsFailFastWithTheCause: nothing listens; a request fails at
// once (not at its deadline) naming the dial error, Ready says it too, and
// the pool logs it once however many attempts it makes.
func TestRequestsFailFastWithTheCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	var l logs
	c := newClient(t, addr, 4, &l)
	for range 3 {
		_, err := c.Generate(ctxT(t), tezos.Ed25519)
		require.Equal(t, domain.KindUnavailable, domain.KindOf(err))
		require.ErrorContains(t, err, "connection refused")
		require.NotErrorIs(t, err, context.DeadlineExceeded)
	}
	require.ErrorContains(t, c.Ready(context.Background()), "connection refused")
	time.Sleep(2 * time.Second) // several redial attempts per connection
	require.Greater(t, c.PoolStats().Redials, uint64(4))
	require.Equal(t, 1, l.count("enclave unreachable", "connection refused"), "%v", l.since(0))
	require.Zero(t, l.count("level=WARN", "conn="), "per-connection lines")
}
