package enclaverpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc"
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

	nc      net.Conn // written under c.mu (Close reads it)
	broken  bool
	synced  int  // keys of c.order already considered for import here
	counted bool // included in c.healthy
	dialed  bool // connect was called before (later calls are redials)
	isIdle  bool // in c.idle; under c.mu
	// draining: a reply to an abandoned request is still on its way.
	draining bool
	rd       countingReader
	wbuf     []byte    // request frame buffer, reused (zeroed after each write)
	lastOK   time.Time // when the last reply was read in full (owner only)
	hmu      sync.Mutex
	handles  map[tezos.PublicKeyHash]uint64
}

// keep is the keeper goroutine: dial and initialize, lend the connection
// to the pool, take it back when it breaks, redial.
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
			if attempt == 0 {
				log.Warn("enclave connection failed", "addr", c.cfg.Addr, "err", err.Error())
			} else {
				log.Debug("enclave connection failed", "addr", c.cfg.Addr, "attempt", attempt+1, "err", err.Error())
			}
			if !cn.sleepUnlessPeerUp(backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		if attempt > 0 {
			log.Info("enclave connection restored", "addr", c.cfg.Addr)
		} else {
			log.Debug("enclave connection up", "addr", c.cfg.Addr)
		}
		attempt = 0
		cn.counted = true
		c.setHealthy(true)
		if !cn.serve() {
			return // closed while a caller holds the connection; Close closed it
		}
		cn.uncount()
		cn.closeConn()
		if c.ctx.Err() != nil {
			return
		}
		log.Warn("enclave connection lost; redialling", "addr", c.cfg.Addr)
		if !cn.sleep(backoff(0)) {
			return
		}
	}
}

// serve runs while the connection is up. The keeper owns the connection
// when serve starts and when it returns. Requests come first: keys this
// connection does not hold yet are imported one at a time while no caller
// waits (and on first use by a request). It reports false when the client
// was closed while a caller held the connection (the keeper must not touch
// it then).
func (cn *conn) serve() bool {
	c := cn.c
	probe := time.NewTicker(idleProbe)
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
		// read: it is drained (next turn), not probed.
		if probing && !cn.draining && !cn.alive() {
			cn.broken = true
			c.log.Warn("idle enclave connection found closed", "conn", cn.id, "addr", c.cfg.Addr)
			return true
		}
	}
}

// syncStep imports the next known key this connection does not hold yet;
// it reports false when the connection holds every key. An enclave error on
// one key is logged (and shows in Ready) and the key skipped (it is
// imported on first use); a connection fault marks the connection broken.
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
		cn.c.log.Error("cannot import key on enclave connection", "conn", cn.id, "key", pkh.String(), "err", err.Error())
	}
	return true
}

// backoff returns a capped exponential delay with jitter (half fixed, half
// random).
func backoff(attempt int) time.Duration {
	d := backoffMin << min(attempt, 16)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// sleepUnlessPeerUp sleeps like sleep, but wakes early when another
// connection of the pool comes up: the enclave is back, so redial now.
func (cn *conn) sleepUnlessPeerUp(d time.Duration) bool {
	cn.c.mu.Lock()
	ch := cn.c.stateCh
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
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return errors.New("client closed")
	}
	cn.nc = nc
	c.mu.Unlock()
	cn.broken = false
	cn.hmu.Lock()
	cn.handles = make(map[tezos.PublicKeyHash]uint64)
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

// uncount removes this connection from the pool's healthy count, once.
func (cn *conn) uncount() {
	if cn.counted {
		cn.counted = false
		cn.c.setHealthy(false)
	}
}

// alive reports whether the connection is still open: between requests the
// enclave never sends anything, so a connection with something to read is
// one the peer closed (or on which it broke the protocol).
func (cn *conn) alive() bool {
	if cn.nc == nil || cn.broken {
		return false
	}
	// A reply arrived less than recentlyAlive ago: the enclave cannot have
	// been restarted since (a restart takes longer), so the peek — a system
	// call on every request under load — is skipped. A connection that
	// broke in that window fails its request, which is retried once on
	// another connection.
	if time.Since(cn.lastOK) < recentlyAlive {
		return true
	}
	return connAlive(cn.nc)
}

// recentlyAlive is the window in which a connection that just answered is
// taken as alive without a peek.
const recentlyAlive = 20 * time.Millisecond

func (cn *conn) closeConn() {
	cn.c.mu.Lock()
	if cn.nc != nil {
		cn.nc.Close()
		cn.nc = nil
	}
	cn.c.mu.Unlock()
	cn.hmu.Lock()
	cn.handles = nil
	cn.hmu.Unlock()
}

// call sends one request and decodes its reply into out (nil: Ok must be
// null). Enclave error replies are returned as *rpc.RPCError; connection
// problems as *connFault, after which the connection is marked broken. The
// wire deadline is RPCTimeout, or ctx's deadline if that is sooner.
func (cn *conn) call(ctx context.Context, req *rpc.Request, out any) error {
	payload, err := rpc.EncodeRequest(req)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "encoding enclave request: %v", err)
	}
	frame := appendFrame(cn.wbuf[:0], payload)
	clear(payload) // may hold a plain private key or credentials
	return cn.roundTrip(ctx, req.Method(), frame, func(reply []byte) error { return rpc.DecodeReply(reply, out) })
}

// sign runs Sign with the hand-encoded request and the fast reply decoder.
func (cn *conn) sign(ctx context.Context, h uint64, msg []byte, version uint8, t tezos.KeyType) (tezos.Signature, error) {
	var sig tezos.Signature
	err := cn.roundTrip(ctx, "Sign", appendSignFrame(cn.wbuf[:0], h, msg, version), func(reply []byte) error {
		tg, ok := fastSignature(reply)
		if !ok {
			if err := rpc.DecodeReply(reply, &tg); err != nil {
				return err
			}
		}
		var err error
		if sig, err = tg.Signature(t); err != nil {
			return errMalformedContent{err}
		}
		return nil
	})
	return sig, err
}

// errMalformedContent is a well-formed reply whose content is wrong.
type errMalformedContent struct{ err error }

func (e errMalformedContent) Error() string { return e.err.Error() }

// roundTrip writes one framed request (then zeroes it) and decodes the
// reply with decode; the observer, if any, sees its duration and outcome.
func (cn *conn) roundTrip(ctx context.Context, method string, frame []byte, decode func(reply []byte) error) error {
	start := time.Now()
	err := cn.roundTrip1(ctx, start, frame, method, decode)
	if o := cn.c.observer.Load(); o != nil {
		(*o).ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: method, Duration: time.Since(start), Failure: failure(err)})
	}
	return err
}

// failure classifies a roundTrip error for metrics.
func failure(err error) string {
	if err == nil {
		return ""
	}
	var re *rpc.RPCError
	if errors.As(err, &re) {
		return ports.EnclaveFailureError
	}
	var f *connFault
	if errors.As(err, &f) && f.ctxErr != nil {
		return ports.EnclaveFailureTimeout
	}
	if errors.Is(err, rpc.ErrMalformed) {
		return ports.EnclaveFailureMalformed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ports.EnclaveFailureTimeout
	}
	return ports.EnclaveFailureConnection
}

func (cn *conn) roundTrip1(ctx context.Context, start time.Time, frame []byte, method string, decode func(reply []byte) error) error {
	if cap(frame) <= 64<<10 {
		defer func() { cn.wbuf = frame[:0] }()
	}
	nc := cn.nc
	if nc == nil || cn.broken {
		clear(frame)
		return cn.fault(errors.New("connection closed"), true)
	}
	deadline := start.Add(cn.c.cfg.RPCTimeout)
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
	reply, err := rpc.ReadFrame(&cn.rd, cn.c.cfg.MaxReplyBytes)
	if err != nil {
		if cn.rd.n == 0 && cn.callerDeadline(ctx, err) {
			// The caller gave up before any of the reply arrived: the
			// keeper reads and drops the reply, and the connection lives.
			cn.draining = true
			return &connFault{err: fmt.Errorf("%s reply: %w", method, err), ctxErr: context.DeadlineExceeded}
		}
		return cn.fault(fmt.Errorf("%s reply: %w", method, err), true)
	}
	cn.lastOK = time.Now()
	err = decode(reply)
	var re *rpc.RPCError
	var mc errMalformedContent
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return re
	case errors.As(err, &mc):
		return cn.malformedReply(mc.err)
	}
	return cn.fault(fmt.Errorf("%s reply: %w", method, err), false)
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
	if _, err := rpc.ReadFrame(cn.nc, cn.c.cfg.MaxReplyBytes); err != nil {
		cn.broken = true
		cn.c.log.Warn("no reply to an abandoned request; redialling", "conn", cn.id, "addr", cn.c.cfg.Addr, "err", err.Error())
	}
}

func (cn *conn) fault(err error, retryable bool) error {
	cn.broken = true
	return &connFault{err: err, retryable: retryable}
}

// malformedReply is a well-framed reply whose content is wrong (bad key,
// wrong type): the connection can no longer be trusted.
func (cn *conn) malformedReply(err error) error {
	return cn.fault(fmt.Errorf("%w: %v", rpc.ErrMalformed, err), false)
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
	var r rpc.ImportResult
	if err := cn.call(ctx, rpc.NewImport(ent.blob), &r); err != nil {
		var re *rpc.RPCError
		if errors.As(err, &re) {
			cn.c.opened(pkh, re)
		}
		return 0, err
	}
	pk, err := r.PublicKey.PublicKey()
	if err != nil {
		return 0, cn.malformedReply(err)
	}
	if !pk.Equal(ent.pub) {
		cn.c.opened(pkh, rpc.NewError(fmt.Sprintf("the sealed key opens as %s", pk.Hash())))
		return 0, domain.Errorf(domain.KindInternal, "enclave opened the sealed key of %s as %s", pkh, pk.Hash())
	}
	cn.c.opened(pkh, nil)
	cn.setHandle(pkh, r.Handle)
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

func (cn *conn) setHandle(pkh tezos.PublicKeyHash, h uint64) {
	cn.hmu.Lock()
	defer cn.hmu.Unlock()
	if cn.handles != nil {
		cn.handles[pkh] = h
	}
}
