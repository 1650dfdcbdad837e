package enclaverpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// conn is one connection slot. At any time it belongs to exactly one of:
// its keeper goroutine (dialling, redialling, importing keys, probing), the
// pool's idle list, or one caller running a request. Only the owner touches
// nc, broken, synced and handles.
type conn struct {
	c      *Client
	id     int
	back   chan struct{} // a caller hands a broken connection back to the keeper
	notify chan struct{} // keys were added

	nc net.Conn // written under c.mu (Close reads it)
	pk *peeker  // looks at nc without reading
	// gen counts the slot's connections; badGen is the generation that
	// returned a signature that does not verify (0: none). Set by callers
	// after they handed the connection back, hence atomic.
	gen, badGen atomic.Uint64
	broken      bool
	synced      int  // keys of c.order already considered for import here
	counted     bool // included in c.healthy
	dialed      bool // connect was called before (later calls are redials)
	isIdle      bool // in c.idle; under c.mu
	// draining: a reply to an abandoned request is still on its way.
	draining bool
	// checked: the socket was peeked (nothing waiting) just before the
	// owner's first write; that write need not peek again.
	checked bool
	// failed: the latest dial or Initialize of this slot failed (counted
	// in c.failing); under c.mu.
	failed bool
	// cause is why the connection broke (the pool's state and logs).
	cause    error
	rd       countingReader
	wbuf     []byte // request frame buffer, reused (zeroed after each write)
	hmu      sync.Mutex
	handles  map[tezos.PublicKeyHash]uint64
	byHandle map[uint64]tezos.PublicKeyHash // the reverse of handles
}

// keep is the keeper goroutine: dial and initialize, lend the connection
// to the pool, take it back when it breaks, redial. Its own events are
// logged at debug level; what an operator needs (the pool lost its last
// connection, cannot reach the enclave, and why; recovered) is logged by
// the pool once per change of state.
func (cn *conn) keep() {
	c := cn.c
	defer c.wg.Done()
	log := c.log.With("conn", cn.id)
	attempt := 0
	for {
		if c.ctx.Err() != nil {
			return
		}
		if err := cn.connect(); err != nil {
			cn.closeConn()
			if c.ctx.Err() != nil {
				return
			}
			c.slotFailed(cn, err)
			log.Debug("enclave connection failed", "addr", c.cfg.Addr, "attempt", attempt+1, "error", err.Error())
			d := backoff(attempt, backoffMin, backoffMax)
			if refusedByEnclave(err) {
				// The enclave answered and refused (its attestation, its
				// KMS): retrying at once would only hammer the Security
				// Token Service or KMS behind it.
				d = backoff(attempt, backoffRefusedMin, backoffRefusedMax)
			}
			if !cn.sleepUnlessPeerUp(d) {
				return
			}
			attempt++
			continue
		}
		log.Debug("enclave connection up", "addr", c.cfg.Addr, "attempts", attempt+1)
		attempt = 0
		cn.counted = true
		c.slotUp(cn)
		if !cn.serve() {
			return // closed while a caller holds the connection; Close closed it
		}
		cn.uncount()
		cn.closeConn()
		if c.ctx.Err() != nil {
			return
		}
		log.Debug("enclave connection lost; redialling", "addr", c.cfg.Addr, "error", errString(cn.cause))
		if !cn.sleep(backoff(0, backoffMin, backoffMax)) {
			return
		}
	}
}

// refusedByEnclave reports whether a failed connect got as far as an
// enclave's error reply to Initialize (rather than failing to reach it).
func refusedByEnclave(err error) bool {
	var re *enclavewire.RPCError
	return errors.As(err, &re) || errors.Is(err, ErrRefused)
}

func errString(err error) string {
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

// serve runs while the connection is up. The keeper owns the connection
// when serve starts and when it returns. Requests come first: keys this
// connection does not hold yet are imported one at a time while no caller
// waits (and on first use by a request). It reports false when the client
// was closed while a caller held the connection (the keeper must not touch
// it then).
func (cn *conn) serve() bool {
	c := cn.c
	probe := time.NewTicker(c.cfg.IdleProbe)
	defer probe.Stop()
	for {
		if cn.draining {
			cn.drain()
		}
		for !cn.broken && !c.hasWaiters() && cn.syncStep() {
		}
		if cn.broken || c.ctx.Err() != nil {
			return true
		}
		c.release(cn)
		probing := false
	lent:
		for {
			select {
			case <-c.ctx.Done():
				return c.reclaim(cn)
			case <-cn.back:
				// A caller found it broken (and uncounted it), or left a
				// reply to drain.
				if cn.broken {
					return true
				}
				break lent
			case <-cn.notify:
				probing = false
			case <-probe.C:
				probing = true
			}
			if c.reclaim(cn) {
				break lent
			}
		}
		// A connection with an abandoned reply on its way has bytes to
		// read: it is drained (next turn), not probed. The probe is one
		// non-blocking peek, whatever deadline the last request left.
		if cn.isBad() {
			// Replaced in place, still counted: callers wait for it (or
			// use another) rather than see the pool down.
			cn.dropBad()
			cn.closeConn()
			if err := cn.connect(); err != nil {
				cn.broken, cn.cause = true, err
				return true
			}
			continue
		}
		if probing && !cn.draining {
			if r := cn.pk.peek(); r != peekIdle {
				cn.poisoned(r, true)
				return true
			}
			if err := cn.refresh(c.ctx); err != nil {
				cn.broken, cn.cause = true, err
				return true
			}
		}
	}
}

// poisoned marks the connection broken because a peek found it r (closed,
// or holding bytes no request asked for). A closed connection is ordinary
// (an enclave restart); bytes nobody asked for are a protocol violation,
// logged here. idle says no request was about to be sent: the violation is
// then counted here (method "none"), else by the request that fails.
func (cn *conn) poisoned(r peekResult, idle bool) {
	c := cn.c
	cn.broken = true
	cn.cause = fmt.Errorf("connection %s", r)
	if r != peekUnsolicited {
		c.log.Debug("enclave connection found "+r.String(), "conn", cn.id, "addr", c.cfg.Addr)
		return
	}
	c.log.Warn("enclave connection poisoned: bytes arrived that no request asked for (a stale, duplicated or unsolicited reply); replacing it",
		"conn", cn.id, "addr", c.cfg.Addr)
	if idle {
		c.observe("none", 0, errUnsolicited)
	}
}

// dropBad breaks a connection that returned a signature that does not
// verify (the caller that got it logged it, through the domain).
func (cn *conn) dropBad() {
	cn.broken = true
	cn.cause = errBadConn
	cn.c.log.Debug("dropping an enclave connection that returned an invalid signature", "conn", cn.id, "addr", cn.c.cfg.Addr)
}

// syncStep imports the next known key this connection does not hold yet;
// it reports false when the connection holds every key. An enclave error on
// one key is recorded (Ready names it; the pool logs the change) and the
// key skipped (it is imported on first use); a connection fault marks the
// connection broken.
func (cn *conn) syncStep() bool {
	pkh, ok := cn.c.keyAt(cn.synced)
	if !ok {
		return false
	}
	cn.synced++
	if _, held := cn.getHandle(pkh); held {
		return true
	}
	if _, err := cn.importKey(cn.c.ctx, pkh); err != nil && !cn.broken {
		cn.c.log.Debug("cannot import key on enclave connection", "conn", cn.id, "key", pkh.String(), "error", err.Error())
	}
	return true
}

// backoff returns a delay growing exponentially with attempt from first
// up to max, with jitter (half fixed, half random).
func backoff(attempt int, first, max time.Duration) time.Duration {
	d := first << min(attempt, 16)
	if d > max || d <= 0 {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

// sleepUnlessPeerUp sleeps like sleep, but wakes early when another
// connection of the pool comes up: the enclave is back, so redial now.
func (cn *conn) sleepUnlessPeerUp(d time.Duration) bool {
	cn.c.mu.Lock()
	ch := cn.c.upCh
	cn.c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ch:
	case <-cn.c.ctx.Done():
		return false
	}
	return true
}

func (cn *conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-cn.c.ctx.Done():
		return false
	}
}

// connect dials and initializes, within DialTimeout.
func (cn *conn) connect() error {
	c := cn.c
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	if cn.dialed {
		c.redials.Add(1)
	}
	cn.dialed = true
	nc, err := c.cfg.Dial(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return errors.New("client closed")
	}
	cn.nc, cn.pk = nc, newPeeker(nc)
	cn.gen.Add(1)
	c.mu.Unlock()
	cn.broken, cn.cause, cn.checked = false, nil, false
	cn.hmu.Lock()
	cn.handles = make(map[tezos.PublicKeyHash]uint64)
	cn.byHandle = make(map[uint64]tezos.PublicKeyHash)
	cn.hmu.Unlock()
	cn.synced = 0
	req, err := c.cfg.Initialize(ctx)
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if err := cn.call(ctx, req, nil); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	return nil
}

// refresh runs Config.Refresh on the connection, if there is one, bounded
// by RPCTimeout. An enclave's error reply is logged and leaves the
// connection usable; another error is returned (the connection broke).
// The next request peeks again (refresh wrote and read).
func (cn *conn) refresh(ctx context.Context) error {
	c := cn.c
	if c.cfg.Refresh == nil || cn.nc == nil {
		return nil
	}
	cn.checked = false
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
	defer cancel()
	err := c.cfg.Refresh(rctx, cn.nc)
	var re *enclavewire.RPCError
	if err == nil || errors.As(err, &re) {
		return nil // the refresher logged the enclave's answer
	}
	return fmt.Errorf("attestation refresh: %w", err)
}

// uncount removes this connection from the pool's healthy count, once.
func (cn *conn) uncount() {
	if cn.counted {
		cn.counted = false
		cn.c.setDown(cn.cause)
	}
}

// check peeks at the connection before its owner's first write: true when
// it is open with nothing waiting (and that write then need not peek).
func (cn *conn) check() (peekResult, bool) {
	if cn.nc == nil || cn.broken {
		return peekClosed, false
	}
	r := cn.pk.peek()
	cn.checked = r == peekIdle
	return r, cn.checked
}

func (cn *conn) closeConn() {
	cn.c.mu.Lock()
	if cn.nc != nil {
		cn.nc.Close()
		cn.nc = nil
	}
	cn.c.mu.Unlock()
	cn.hmu.Lock()
	cn.handles, cn.byHandle = nil, nil
	cn.hmu.Unlock()
}

// call sends one request and decodes its reply into out (nil: Ok must be
// null). Enclave error replies are returned as *enclavewire.RPCError; connection
// problems as *connFault, after which the connection is marked broken. The
// wire deadline is RPCTimeout, or ctx's deadline if that is sooner.
func (cn *conn) call(ctx context.Context, req *enclavewire.Request, out any) error {
	payload, err := enclavewire.EncodeRequest(req)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "encoding enclave request: %v", err)
	}
	frame := appendFrame(cn.wbuf[:0], payload)
	clear(payload) // may hold a plain private key or credentials
	return cn.roundTrip(ctx, req.Method(), frame, func(reply []byte) error { return enclavewire.DecodeReply(reply, out) }, nil)
}

// sign runs Sign with the hand-encoded request and the fast reply decoder.
// The signature is not verified here but by the caller, once the
// connection is back in the pool (Client.Sign): a BLS verification takes
// longer than the enclave's signature, and holding the connection through
// it would halve what the pool serves. A failed request is observed here;
// a reply is observed by the caller, with the verification's outcome.
// used is the connection's generation, to mark it bad afterwards.
func (cn *conn) sign(ctx context.Context, h uint64, t tezos.KeyType, msg []byte, version uint8) (sig tezos.Signature, wire time.Duration, used uint64, err error) {
	start := time.Now()
	used = cn.gen.Load()
	err = cn.roundTrip1(ctx, appendSignFrame(cn.wbuf[:0], h, msg, version), "Sign", func(reply []byte) error {
		tg, ok := fastSignature(reply)
		if !ok {
			if err := enclavewire.DecodeReply(reply, &tg); err != nil {
				return err
			}
		}
		var err error
		if sig, err = tg.Signature(t); err != nil {
			return errMalformedContent{err}
		}
		return nil
	})
	wire = time.Since(start)
	if err != nil {
		cn.c.observe("Sign", wire, err)
	}
	return sig, wire, used, err
}

// markBad records that the connection of generation gen returned a
// signature that does not verify: whoever holds the connection next (a
// caller, or its keeper) drops it before sending anything on it. A
// connection redialled since (another generation) is left alone.
func (cn *conn) markBad(gen uint64) {
	for {
		old := cn.badGen.Load()
		if old >= gen || cn.badGen.CompareAndSwap(old, gen) {
			return
		}
	}
}

// isBad reports whether the current connection was marked bad.
func (cn *conn) isBad() bool {
	b := cn.badGen.Load()
	return b != 0 && b == cn.gen.Load()
}

// BadSignatureError is a signature from the enclave that does not verify
// under the key's public key for the message (and BLS signing version)
// asked for: an enclave fault (or a connection that lies). It wraps
// ports.ErrEnclaveBadSignature.
type BadSignatureError struct {
	Key    tezos.PublicKeyHash
	Method string // Sign or ProvePossession
	Err    error  // the verifier's error
}

func (e *BadSignatureError) Error() string {
	return fmt.Sprintf("%s reply for %s: %v: %v", e.Method, e.Key, ports.ErrEnclaveBadSignature, e.Err)
}

func (e *BadSignatureError) Unwrap() error { return ports.ErrEnclaveBadSignature }

// errMalformedContent is a well-formed reply whose content is wrong.
type errMalformedContent struct{ err error }

func (e errMalformedContent) Error() string { return e.err.Error() }

// roundTrip writes one framed request (then zeroes it) and decodes the
// reply with decode, then runs verify (if any) on what decode kept: a
// verification failure breaks the connection and is never retried. The
// observer, if any, sees the wire duration (verification excluded) and the
// outcome.
func (cn *conn) roundTrip(ctx context.Context, method string, frame []byte, decode func(reply []byte) error, verify func() error) error {
	start := time.Now()
	err := cn.roundTrip1(ctx, frame, method, decode)
	d := time.Since(start)
	if err == nil && verify != nil {
		if verr := verify(); verr != nil {
			err = cn.fault(verr, false)
		}
	}
	cn.c.observe(method, d, err)
	return err
}

// observe reports one request on the wire to the observer, if any.
func (c *Client) observe(method string, d time.Duration, err error) {
	if o := c.observer.Load(); o != nil {
		(*o).ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: method, Duration: d, Failure: failure(err)})
	}
}

// failure classifies a roundTrip error for metrics.
func failure(err error) string {
	if err == nil {
		return ""
	}
	var re *enclavewire.RPCError
	if errors.As(err, &re) {
		return ports.EnclaveFailureError
	}
	if errors.Is(err, ports.ErrEnclaveBadSignature) {
		return ports.EnclaveFailureBadSignature
	}
	if errors.Is(err, errUnsolicited) {
		return ports.EnclaveFailureUnsolicited
	}
	var f *connFault
	if errors.As(err, &f) && f.ctxErr != nil {
		return ports.EnclaveFailureTimeout
	}
	if errors.Is(err, enclavewire.ErrMalformed) {
		return ports.EnclaveFailureMalformed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ports.EnclaveFailureTimeout
	}
	return ports.EnclaveFailureConnection
}

// errBadConn: the connection returned a signature that does not verify.
var errBadConn = errors.New("the connection returned a signature that does not verify")

// errUnsolicited: bytes were waiting on the connection before a request
// was written.
var errUnsolicited = errors.New("bytes arrived that no request asked for (a stale, duplicated or unsolicited reply)")

func (cn *conn) roundTrip1(ctx context.Context, frame []byte, method string, decode func(reply []byte) error) error {
	if cap(frame) <= 64<<10 {
		defer func() { cn.wbuf = frame[:0] }()
	}
	nc := cn.nc
	if nc == nil || cn.broken {
		clear(frame)
		return cn.fault(errors.New("connection closed"), true)
	}
	if cn.isBad() {
		clear(frame)
		return cn.fault(fmt.Errorf("%s request not sent: %w", method, errBadConn), true)
	}
	// One request, one reply: before a request goes out, nothing may be
	// waiting to be read. A reply nobody asked for would otherwise be read
	// as this request's reply, and every later one would be one behind.
	if !cn.checked {
		if r := cn.pk.peek(); r != peekIdle {
			clear(frame)
			cn.poisoned(r, false)
			if r == peekUnsolicited {
				return cn.fault(fmt.Errorf("%s request not sent: %w", method, errUnsolicited), true)
			}
			return cn.fault(fmt.Errorf("%s request not sent: connection %s", method, r), true)
		}
	}
	cn.checked = false
	deadline := time.Now().Add(cn.c.cfg.RPCTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	_, err := nc.Write(frame)
	clear(frame) // may hold a plain private key or credentials
	if err != nil {
		return cn.fault(fmt.Errorf("%s request: %w", method, err), true)
	}
	cn.rd.r, cn.rd.n = nc, 0
	reply, err := enclavewire.ReadFrame(&cn.rd, cn.c.cfg.MaxReplyBytes)
	if err != nil {
		if cn.rd.n == 0 && cn.callerDeadline(ctx, err) {
			// The caller gave up before any of the reply arrived: the
			// keeper reads and drops the reply, and the connection lives.
			cn.draining = true
			return &connFault{err: fmt.Errorf("%s reply: %w", method, err), ctxErr: context.DeadlineExceeded}
		}
		return cn.fault(fmt.Errorf("%s reply: %w", method, err), true)
	}
	err = decode(reply)
	var re *enclavewire.RPCError
	var mc errMalformedContent
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return re
	case errors.As(err, &mc):
		return cn.malformedReply(fmt.Errorf("%s reply: %v", method, mc.err))
	}
	return cn.malformedReply(fmt.Errorf("%s reply: %w", method, err))
}

// callerDeadline reports whether err is a timeout caused by ctx's
// deadline (sooner than RPCTimeout) rather than by the enclave's silence.
func (cn *conn) callerDeadline(ctx context.Context, err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// drain reads and drops the reply of a request its caller abandoned, within
// RPCTimeout; the connection is broken if none arrives.
func (cn *conn) drain() {
	cn.draining = false
	_ = cn.nc.SetDeadline(time.Now().Add(cn.c.cfg.RPCTimeout))
	if _, err := enclavewire.ReadFrame(cn.nc, cn.c.cfg.MaxReplyBytes); err != nil {
		cn.broken = true
		cn.cause = fmt.Errorf("no reply to an abandoned request: %w", err)
		cn.c.log.Debug("no reply to an abandoned request; redialling", "conn", cn.id, "addr", cn.c.cfg.Addr, "error", err.Error())
	}
}

// fault breaks the connection. retryable means the request may be sent
// again on another connection: nothing was received, or what was received
// was not a reply to it (malformed, stale, for another key).
func (cn *conn) fault(err error, retryable bool) error {
	cn.broken = true
	if cn.cause == nil {
		cn.cause = err
	}
	return &connFault{err: err, retryable: retryable}
}

// malformedReply is a well-framed reply whose content is wrong (bad key,
// wrong type, wrong size, not CBOR, a handle already in use): the
// connection can no longer be trusted, and the request is retried once on
// another connection.
func (cn *conn) malformedReply(err error) error {
	if !errors.Is(err, enclavewire.ErrMalformed) {
		err = fmt.Errorf("%w: %v", enclavewire.ErrMalformed, err)
	}
	return cn.fault(err, true)
}

// handleRefused turns the enclave's "invalid handle" for handle h, which
// this very connection gave, into a malformed reply: the enclave and the
// connection disagree on what it holds (a reply meant for another request,
// a rewritten request), so the connection is replaced and the request
// retried once, never answered as "key not found". Other errors pass.
func (cn *conn) handleRefused(err error, h uint64) error {
	var re *enclavewire.RPCError
	if err == nil || !errors.As(err, &re) || !strings.Contains(strings.ToLower(re.Error()), "invalid handle") {
		return err
	}
	return cn.malformedReply(fmt.Errorf("the enclave refused handle %d, which it gave on this connection: %v", h, re))
}

// handle returns this connection's handle for pkh, importing the key first
// if needed.
func (cn *conn) handle(ctx context.Context, pkh tezos.PublicKeyHash) (uint64, error) {
	if h, ok := cn.getHandle(pkh); ok {
		return h, nil
	}
	return cn.importKey(ctx, pkh)
}

func (cn *conn) importKey(ctx context.Context, pkh tezos.PublicKeyHash) (uint64, error) {
	ent, ok := cn.c.lookup(pkh)
	if !ok {
		return 0, domain.Errorf(domain.KindNotFound, "key %s is not loaded in the enclave", pkh)
	}
	var r enclavewire.ImportResult
	if err := cn.call(ctx, enclavewire.NewImport(ent.blob), &r); err != nil {
		var re *enclavewire.RPCError
		if errors.As(err, &re) {
			cn.c.opened(pkh, re)
		}
		return 0, err
	}
	pk, err := r.PublicKey.PublicKey()
	if err != nil {
		return 0, cn.malformedReply(fmt.Errorf("Import reply: %v", err))
	}
	if !pk.Equal(ent.pub) {
		// The key is not usable here (Ready names it). A reply that was
		// not the reply to this Import leaves the real one waiting, which
		// the peek before the next request finds.
		cn.c.opened(pkh, enclavewire.NewError(fmt.Sprintf("the sealed key opens as %s", pk.Hash())))
		return 0, domain.Errorf(domain.KindInternal, "enclave opened the sealed key of %s as %s", pkh, pk.Hash())
	}
	if err := cn.setHandle(pkh, r.Handle); err != nil {
		return 0, err
	}
	cn.c.opened(pkh, nil)
	return r.Handle, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (cn *conn) getHandle(pkh tezos.PublicKeyHash) (uint64, bool) {
	cn.hmu.Lock()
	defer cn.hmu.Unlock()
	h, ok := cn.handles[pkh]
	return h, ok
}

// setHandle records the handle the enclave gave pkh on this connection. A
// handle already given to another key is not a reply to this request (a
// stale or replayed one): the connection is broken as malformed.
func (cn *conn) setHandle(pkh tezos.PublicKeyHash, h uint64) error {
	cn.hmu.Lock()
	if other, used := cn.byHandle[h]; used && other != pkh {
		cn.hmu.Unlock()
		return cn.malformedReply(fmt.Errorf("handle %d for %s is already the handle of %s on this connection", h, pkh, other))
	}
	if cn.handles != nil {
		cn.handles[pkh] = h
		cn.byHandle[h] = pkh
	}
	cn.hmu.Unlock()
	return nil
}

// peekResult is what a non-blocking look at an idle connection found.
type peekResult int

const (
	peekIdle        peekResult = iota // open, nothing to read: healthy
	peekClosed                        // end of file: the enclave closed it
	peekUnsolicited                   // bytes no request asked for
	peekError                         // the socket failed
)

func (r peekResult) String() string {
	switch r {
	case peekIdle:
		return "idle"
	case peekClosed:
		return "closed by the enclave"
	case peekUnsolicited:
		return "holding bytes no request asked for"
	}
	return "broken"
}
