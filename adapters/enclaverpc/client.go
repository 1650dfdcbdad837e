package enclaverpc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Backoff bounds for redialling.
var (
	backoffMin = 50 * time.Millisecond
	backoffMax = time.Second // an enclave that comes back is found within a second
	// backoffRefusedMax caps the redials of an enclave that answers but
	// refuses Initialize (its attestation token refused by the Security
	// Token Service, its KMS key refused): each attempt costs a request to
	// those services, and the cause needs a person, not a retry storm.
	backoffRefusedMax = 8 * time.Second
	backoffRefusedMin = time.Second
)

// Client is a pooled client of an enclave signer. It implements
// ports.Enclave. Create it with New; Close releases it.
type Client struct {
	cfg Config
	log *slog.Logger

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup

	kmu      sync.RWMutex
	keys     map[tezos.PublicKeyHash]*keyEntry
	order    []tezos.PublicKeyHash // load order; only grows
	unopened map[tezos.PublicKeyHash]string
	conns    []*conn

	mu      sync.Mutex
	idle    []*conn       // healthy connections nobody uses
	waiters []chan *conn  // callers waiting for a connection, oldest first
	healthy int           // connections up and initialized
	failing int           // slots whose latest dial or Initialize failed
	lastErr error         // why the pool has no healthy connection (latest cause)
	everUp  bool          // some connection was up once
	closed  bool          // Close was called
	stateCh chan struct{} // closed and replaced whenever health changes
	upCh    chan struct{} // closed and replaced whenever a connection comes up
	// The state last logged: down (with its cause) or up; and whether the
	// enclave refused to open some stored keys.
	loggedDown     bool
	loggedCause    string
	loggedUnopened bool

	verifying chan struct{} // one token per signature being verified

	redials  atomic.Uint64                            // connect() calls after each slot's first
	observer atomic.Pointer[ports.EnclaveRPCObserver] // nil: none
}

type keyEntry struct {
	pub  tezos.PublicKey
	ver  *tezos.Verifier // pub, parsed once
	blob []byte
}

var (
	_ ports.Enclave     = (*Client)(nil)
	_ ports.EnclavePool = (*Client)(nil)
)

// New validates cfg and starts the connection pool in the background; it
// does not wait for the enclave. log may be nil.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:       cfg,
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		keys:      make(map[tezos.PublicKeyHash]*keyEntry),
		unopened:  make(map[tezos.PublicKeyHash]string),
		stateCh:   make(chan struct{}),
		upCh:      make(chan struct{}),
		verifying: make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	for i := range cfg.Connections {
		c.conns = append(c.conns, &conn{c: c, id: i, back: make(chan struct{}, 1), notify: make(chan struct{}, 1)})
	}
	c.wg.Add(len(c.conns))
	for _, cn := range c.conns {
		go cn.keep()
	}
	return c, nil
}

// Size returns the pool size.
func (c *Client) Size() int { return len(c.conns) }

// Addr returns the enclave address as configured.
func (c *Client) Addr() string { return c.cfg.Addr }

// Close stops the pool and closes every connection. Calls in flight fail.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.mu.Lock()
		c.closed = true
		for _, cn := range c.conns {
			if cn.nc != nil {
				cn.nc.Close()
			}
		}
		close(c.stateCh)
		c.stateCh = make(chan struct{})
		close(c.upCh)
		c.upCh = make(chan struct{})
		c.mu.Unlock()
		c.wg.Wait()
	})
	return nil
}

// PoolStats implements ports.EnclavePool: the pool's size and health now.
func (c *Client) PoolStats() ports.EnclavePoolStats {
	c.mu.Lock()
	up := c.healthy
	c.mu.Unlock()
	c.kmu.RLock()
	loaded, unopened := len(c.keys)-len(c.unopened), len(c.unopened)
	c.kmu.RUnlock()
	return ports.EnclavePoolStats{
		Connections: len(c.conns), Up: up, Redials: c.redials.Load(),
		KeysLoaded: loaded, KeysUnopened: unopened,
	}
}

// SetRPCObserver implements ports.EnclavePool: o sees every request on the
// wire from now on (nil: none).
func (c *Client) SetRPCObserver(o ports.EnclaveRPCObserver) {
	if o == nil {
		c.observer.Store(nil)
		return
	}
	c.observer.Store(&o)
}

// Ready returns nil when at least one connection is up and initialized and
// the enclave has opened every known key it was asked to. Otherwise it says
// why: no connection (and the latest cause: the dial error, the enclave's
// refusal of Initialize, how the last connection was lost), or the address
// of a key the enclave cannot open (a restarted enclave initialized with
// another KMS key) and the enclave's reason.
func (c *Client) Ready(ctx context.Context) error {
	c.mu.Lock()
	n := c.healthy
	var err error
	if n == 0 {
		err = c.unavailableLocked()
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.kmu.RLock()
	defer c.kmu.RUnlock()
	if len(c.unopened) == 0 {
		return nil
	}
	addrs := make([]string, 0, len(c.unopened))
	for pkh := range c.unopened {
		addrs = append(addrs, pkh.String())
	}
	sort.Strings(addrs)
	first, _ := tezos.ParsePublicKeyHash(addrs[0])
	more := ""
	if len(addrs) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(addrs)-1)
	}
	return domain.Errorf(domain.KindUnavailable, "enclave cannot open the stored key %s%s: %s", addrs[0], more, c.unopened[first])
}

// Load imports a sealed blob on one connection (then on all others in the
// background) and returns its public key.
func (c *Client) Load(ctx context.Context, blob []byte) (tezos.PublicKey, error) {
	if len(blob) == 0 {
		return tezos.PublicKey{}, domain.Errorf(domain.KindInvalid, "empty sealed key blob")
	}
	blob = append([]byte(nil), blob...)
	pk, err := do(c, ctx, func(cn *conn) (tezos.PublicKey, error) {
		var r enclavewire.ImportResult
		if err := cn.call(ctx, enclavewire.NewImport(blob), &r); err != nil {
			return tezos.PublicKey{}, err
		}
		pk, err := r.PublicKey.PublicKey()
		if err != nil {
			return tezos.PublicKey{}, cn.malformedReply(fmt.Errorf("Import reply: %v", err))
		}
		if err := cn.setHandle(pk.Hash(), r.Handle); err != nil {
			return tezos.PublicKey{}, err
		}
		return pk, nil
	})
	if err != nil {
		return tezos.PublicKey{}, err
	}
	if err := c.addKey(pk, blob); err != nil {
		return tezos.PublicKey{}, err
	}
	return pk, nil
}

// Generate creates a key of type t in the enclave, loads it everywhere and
// returns it sealed.
func (c *Client) Generate(ctx context.Context, t tezos.KeyType) (ports.SealedKey, error) {
	kt, err := enclavewire.KeyTypeFor(t)
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot generate: %v", err)
	}
	return c.seal(ctx, enclavewire.NewGenerateAndImport(kt), t, nil)
}

// Import seals a plain private key in the enclave and loads it everywhere.
func (c *Client) Import(ctx context.Context, sk tezos.PrivateKey) (ports.SealedKey, error) {
	want, err := sk.Public()
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot import: %v", err)
	}
	wire, err := enclavewire.NewPrivateKey(sk)
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot import: %v", err)
	}
	defer wire.Zero()
	return c.seal(ctx, enclavewire.NewImportUnencrypted(wire), sk.Type, &want)
}

// seal runs a request that creates a sealed, loaded key (GenerateAndImport
// or ImportUnencrypted), checks the reply (type t; the public key want when
// known) and makes the key available on every connection.
func (c *Client) seal(ctx context.Context, req *enclavewire.Request, t tezos.KeyType, want *tezos.PublicKey) (ports.SealedKey, error) {
	sealed, err := do(c, ctx, func(cn *conn) (ports.SealedKey, error) {
		var r enclavewire.GenerateAndImportResult
		if err := cn.call(ctx, req, &r); err != nil {
			return ports.SealedKey{}, err
		}
		method := req.Method()
		pk, err := r.PublicKey.PublicKeyOf(t)
		if err != nil {
			return ports.SealedKey{}, cn.malformedReply(fmt.Errorf("%s reply: %v", method, err))
		}
		if want != nil && !pk.Equal(*want) {
			// Not the key sent: a reply to another request.
			return ports.SealedKey{}, cn.malformedReply(fmt.Errorf("%s reply: public key %s for an imported %s key", method, pk, want))
		}
		if _, known := c.lookup(pk.Hash()); want == nil && known {
			// A key generated now cannot be one the client already
			// holds: a stale or replayed reply.
			return ports.SealedKey{}, cn.malformedReply(fmt.Errorf("%s reply: a key generated now is %s, which is already loaded", method, pk.Hash()))
		}
		if len(r.EncryptedPrivateKey) == 0 {
			return ports.SealedKey{}, cn.malformedReply(fmt.Errorf("%s reply: empty sealed key", method))
		}
		if err := cn.setHandle(pk.Hash(), r.Handle); err != nil {
			return ports.SealedKey{}, err
		}
		return ports.SealedKey{PublicKey: pk, Blob: r.EncryptedPrivateKey}, nil
	})
	if err != nil {
		return ports.SealedKey{}, err
	}
	if err := c.addKey(sealed.PublicKey, sealed.Blob); err != nil {
		return ports.SealedKey{}, err
	}
	return sealed, nil
}

// Sign signs msg with a loaded key. The signature is verified with the
// key's public key (whose hash is key), for msg and the signing version,
// before it is returned: one that does not verify breaks the connection
// and fails as unavailable, wrapping ports.ErrEnclaveBadSignature (never
// retried: a lying enclave gets no second chance on this request).
func (c *Client) Sign(ctx context.Context, key tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error) {
	ent, ok := c.lookup(key)
	if !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "key %s is not loaded in the enclave", key)
	}
	if key.Type == tezos.BLS {
		switch version {
		case tezos.SignVersion1, tezos.SignVersion2, tezos.SignVersionLatest:
		default:
			return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "invalid signing version %d for a BLS key (want 1, 2 or 255)", version)
		}
	}
	var (
		used *conn
		gen  uint64
		wire time.Duration
	)
	sig, err := do(c, ctx, func(cn *conn) (tezos.Signature, error) {
		h, err := cn.handle(ctx, key)
		if err != nil {
			return tezos.Signature{}, err
		}
		sig, d, g, err := cn.sign(ctx, h, key.Type, msg, version)
		used, gen, wire = cn, g, d
		return sig, cn.handleRefused(err, h)
	})
	if err != nil {
		return tezos.Signature{}, err
	}
	// Verified with the connection back in the pool (if it lied, it is
	// dropped before it carries anything else), by at most GOMAXPROCS
	// callers at once: under a burst, requests then finish in the order
	// they got their signature instead of all together at the end.
	select {
	case c.verifying <- struct{}{}:
	case <-ctx.Done():
		return tezos.Signature{}, ctxError(ctx)
	}
	verr := ent.ver.Verify(msg, sig, version)
	<-c.verifying
	if verr != nil {
		used.markBad(gen)
		bad := &BadSignatureError{Key: key, Method: "Sign", Err: verr}
		c.observe("Sign", wire, bad)
		return tezos.Signature{}, domain.Errorf(domain.KindUnavailable, "enclave unavailable: %w (connection dropped)", bad)
	}
	c.observe("Sign", wire, nil)
	return sig, nil
}

// ProvePossession returns a BLS proof of possession for a loaded tz4 key,
// verified with the key's public key before it is returned (as Sign).
func (c *Client) ProvePossession(ctx context.Context, key tezos.PublicKeyHash) (tezos.Signature, error) {
	if key.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "proof of possession needs a BLS (tz4) key, not %s", key)
	}
	ent, ok := c.lookup(key)
	if !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "key %s is not loaded in the enclave", key)
	}
	return do(c, ctx, func(cn *conn) (tezos.Signature, error) {
		h, err := cn.handle(ctx, key)
		if err != nil {
			return tezos.Signature{}, err
		}
		payload, err := enclavewire.EncodeRequest(enclavewire.NewProvePossession(h))
		if err != nil {
			return tezos.Signature{}, domain.Errorf(domain.KindInternal, "encoding enclave request: %v", err)
		}
		var proof tezos.Signature
		err = cn.roundTrip(ctx, "ProvePossession", appendFrame(cn.wbuf[:0], payload), func(reply []byte) error {
			var tg enclavewire.Tagged
			if err := enclavewire.DecodeReply(reply, &tg); err != nil {
				return err
			}
			var err error
			if proof, err = tg.Signature(tezos.BLS); err != nil {
				return errMalformedContent{err}
			}
			return nil
		}, func() error {
			if err := ent.ver.VerifyPossession(proof); err != nil {
				return &BadSignatureError{Key: key, Method: "ProvePossession", Err: err}
			}
			return nil
		})
		return proof, cn.handleRefused(err, h)
	})
}

func (c *Client) lookup(pkh tezos.PublicKeyHash) (*keyEntry, bool) {
	c.kmu.RLock()
	k, ok := c.keys[pkh]
	c.kmu.RUnlock()
	return k, ok
}

// addKey records a loaded key and asks every connection to import it.
func (c *Client) addKey(pk tezos.PublicKey, blob []byte) error {
	pkh := pk.Hash()
	ver, err := tezos.NewVerifier(pk)
	if err != nil {
		return domain.Errorf(domain.KindInternal, "enclave returned an unusable public key %s: %v", pkh, err)
	}
	c.kmu.Lock()
	if _, ok := c.keys[pkh]; !ok {
		c.keys[pkh] = &keyEntry{pub: pk, ver: ver, blob: append([]byte(nil), blob...)}
		c.order = append(c.order, pkh)
	}
	delete(c.unopened, pkh)
	c.kmu.Unlock()
	for _, cn := range c.conns {
		select {
		case cn.notify <- struct{}{}:
		default:
		}
	}
	return nil
}

// keyAt returns the i-th key in load order, or false past its end.
func (c *Client) keyAt(i int) (tezos.PublicKeyHash, bool) {
	c.kmu.RLock()
	defer c.kmu.RUnlock()
	if i >= len(c.order) {
		return tezos.PublicKeyHash{}, false
	}
	return c.order[i], true
}

// opened records whether a (re)connected enclave could open a known key:
// err is the enclave's refusal, nil on success. The pool logs when some
// stored keys stop opening and when all open again, not once per key.
func (c *Client) opened(pkh tezos.PublicKeyHash, err *enclavewire.RPCError) {
	c.kmu.Lock()
	if err == nil {
		delete(c.unopened, pkh)
	} else if _, known := c.keys[pkh]; known {
		c.unopened[pkh] = err.Error()
	}
	n := len(c.unopened)
	c.kmu.Unlock()
	c.mu.Lock()
	change := (n > 0) != c.loggedUnopened
	c.loggedUnopened = n > 0
	c.mu.Unlock()
	switch {
	case !change:
	case n > 0:
		c.stateLog(slog.LevelError, "enclave cannot open stored keys", slog.String("addr", c.cfg.Addr), slog.String("pkh", pkh.String()), slog.String("error", err.Error()))
	default:
		c.stateLog(slog.LevelInfo, "enclave opens every stored key again", slog.String("addr", c.cfg.Addr))
	}
}

// stateLog logs a change of the pool's state: at level for a daemon
// (Config.LogState), at debug otherwise (a one-shot command reports the
// cause in its error instead).
func (c *Client) stateLog(level slog.Level, msg string, attrs ...slog.Attr) {
	if !c.cfg.LogState {
		level = slog.LevelDebug
	}
	c.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// ConnectionsHolding reports on how many pooled connections the key is
// loaded (for tests and diagnostics).
func (c *Client) ConnectionsHolding(pkh tezos.PublicKeyHash) int {
	n := 0
	for _, cn := range c.conns {
		if _, ok := cn.getHandle(pkh); ok {
			n++
		}
	}
	return n
}

// slotUp counts a connection that came up (dialled and initialized).
func (c *Client) slotUp(cn *conn) {
	c.mu.Lock()
	if cn.failed {
		cn.failed = false
		c.failing--
	}
	c.healthy++
	c.everUp = true
	c.lastErr = nil
	restored := c.healthy == 1 && c.loggedDown
	if restored {
		c.loggedDown, c.loggedCause = false, ""
	}
	c.wakeLocked()
	close(c.upCh)
	c.upCh = make(chan struct{})
	c.mu.Unlock()
	if restored {
		c.stateLog(slog.LevelInfo, "enclave connection restored", slog.String("addr", c.cfg.Addr))
	}
}

// setDown uncounts a connection that was up and broke for cause (nil: the
// client is closing).
func (c *Client) setDown(cause error) {
	c.mu.Lock()
	c.healthy--
	if c.healthy == 0 && cause != nil {
		c.lastErr = fmt.Errorf("connection lost: %w", cause)
	}
	c.wakeLocked()
	var msg string
	var args []slog.Attr
	if c.ctx.Err() == nil {
		msg, args = c.downLogLocked()
	}
	c.mu.Unlock()
	if msg != "" {
		c.stateLog(slog.LevelWarn, msg, args...)
	}
}

// slotFailed records a failed dial or Initialize of cn.
func (c *Client) slotFailed(cn *conn, err error) {
	c.mu.Lock()
	if !cn.failed {
		cn.failed = true
		c.failing++
	}
	c.lastErr = err
	c.wakeLocked()
	msg, args := c.downLogLocked()
	c.mu.Unlock()
	if msg != "" {
		c.stateLog(slog.LevelWarn, msg, args...)
	}
}

// downLocked reports (under c.mu) whether the pool is known to be down: no
// healthy connection, and every slot's latest dial or Initialize failed.
// Requests then fail at once with the cause instead of waiting for their
// deadline. Connections that were lost and are being redialled are not
// enough: a request waits for the redial (two connections replaced at the
// same moment must not fail requests).
func (c *Client) downLocked() bool {
	return c.healthy == 0 && c.failing == len(c.conns)
}

// downLogLocked returns the log line for a pool that went down or whose
// cause changed while down ("" when nothing changed): one line per change
// of state, never one per attempt or per connection. Down, for the log, is
// no healthy connection after some were up, or every attempt failed.
func (c *Client) downLogLocked() (string, []slog.Attr) {
	if c.healthy > 0 || !(c.everUp || c.failing == len(c.conns)) || c.lastErr == nil {
		return "", nil
	}
	cause := c.lastErr.Error()
	if c.loggedDown && cause == c.loggedCause {
		return "", nil
	}
	first := !c.loggedDown
	c.loggedDown, c.loggedCause = true, cause
	args := []slog.Attr{slog.String("addr", c.cfg.Addr), slog.Int("connections", len(c.conns)), slog.String("error", cause)}
	switch {
	case !first:
		return "enclave still unavailable, for another reason; retrying", args
	case c.everUp:
		return "enclave connection lost; redialling", args
	}
	return "enclave unreachable; retrying", args
}

// wakeLocked wakes the callers waiting for a connection (under c.mu), so
// that they look at the pool's state again.
func (c *Client) wakeLocked() {
	close(c.stateCh)
	c.stateCh = make(chan struct{})
}

// unavailableLocked is the error of a request that finds no healthy
// connection, with the latest cause.
func (c *Client) unavailableLocked() error {
	if c.lastErr == nil {
		return domain.Errorf(domain.KindUnavailable, "enclave unavailable: no healthy connection to %s", c.cfg.Addr)
	}
	return domain.Errorf(domain.KindUnavailable, "enclave unavailable: no healthy connection to %s: %v", c.cfg.Addr, c.lastErr)
}

func (c *Client) errClosed() error {
	return domain.Errorf(domain.KindUnavailable, "enclave unavailable: client closed")
}

// get takes an idle connection, waiting for one if all are busy or being
// redialled. It fails at once, naming the cause, when no connection is
// healthy and every connection's latest attempt failed: the enclave is
// down or refuses connections or Initialize (callers should not queue
// behind redials, and a command should say so now, not when its deadline
// expires).
func (c *Client) get(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, c.errClosed()
		}
		if n := len(c.idle); n > 0 {
			cn := c.idle[n-1]
			c.idle = c.idle[:n-1]
			cn.isIdle = false
			c.mu.Unlock()
			return cn, nil
		}
		if c.downLocked() {
			err := c.unavailableLocked()
			c.mu.Unlock()
			return nil, err
		}
		req := make(chan *conn, 1)
		c.waiters = append(c.waiters, req)
		stateCh := c.stateCh
		c.mu.Unlock()
		select {
		case cn := <-req:
			return cn, nil
		case <-stateCh:
			if cn := c.dropWaiter(req); cn != nil {
				return cn, nil
			}
		case <-ctx.Done():
			if cn := c.dropWaiter(req); cn != nil {
				c.release(cn)
			}
			return nil, ctxError(ctx)
		}
	}
}

// dropWaiter removes req from the waiters; if a connection was handed to
// it meanwhile, it returns that connection.
func (c *Client) dropWaiter(req chan *conn) *conn {
	c.mu.Lock()
	for i, w := range c.waiters {
		if w == req {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			c.mu.Unlock()
			return nil
		}
	}
	c.mu.Unlock()
	return <-req // it was handed one before we got the lock
}

// release makes a healthy connection available: to the oldest waiting
// caller, or to the idle list.
func (c *Client) release(cn *conn) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.waiters) > 0 {
		w := c.waiters[0]
		copy(c.waiters, c.waiters[1:])
		c.waiters[len(c.waiters)-1] = nil
		c.waiters = c.waiters[:len(c.waiters)-1]
		c.mu.Unlock()
		w <- cn // buffered: never blocks
		return
	}
	cn.isIdle = true
	c.idle = append(c.idle, cn)
	c.mu.Unlock()
}

// reclaim takes cn back from the idle list for its keeper; false if a
// caller is using it.
func (c *Client) reclaim(cn *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !cn.isIdle {
		return false
	}
	for i, x := range c.idle {
		if x == cn {
			c.idle = append(c.idle[:i], c.idle[i+1:]...)
			break
		}
	}
	cn.isIdle = false
	return true
}

func (c *Client) hasWaiters() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters) > 0
}

// put returns a connection after use: a broken one to its keeper (out of
// the healthy count first, so that a caller who sees this failure also sees
// the pool's health reflect it), a healthy one to the pool.
func (c *Client) put(cn *conn) {
	cn.checked = false
	if cn.broken || cn.draining {
		if cn.broken {
			cn.uncount()
		}
		cn.back <- struct{}{} // buffered; only the owner sends
		return
	}
	c.release(cn)
}

// connFault is a broken connection. retryable means no reply was received,
// so the request may be sent again on another connection.
type connFault struct {
	err       error
	retryable bool
	ctxErr    error // the caller's deadline expired during the call
}

func (f *connFault) Error() string { return f.err.Error() }
func (f *connFault) Unwrap() error { return f.err }

// do runs fn on an idle healthy connection on the caller's goroutine,
// retrying once on another connection if the first broke before replying,
// and maps errors to domain kinds.
func do[T any](c *Client, ctx context.Context, fn func(cn *conn) (T, error)) (T, error) {
	var zero T
	var first error // the fault that caused a retry, kept for the message
	for attempt := 0; ; attempt++ {
		v, err := once(c, ctx, fn)
		if err == nil {
			return v, nil
		}
		var f *connFault
		if errors.As(err, &f) {
			if cerr := cmp.Or(f.ctxErr, ctx.Err()); cerr != nil {
				err = domain.Errorf(domain.KindUnavailable, "enclave unavailable: %w (%v)", cerr, f.err)
			} else if f.retryable && attempt == 0 {
				c.log.Debug("retrying request on another connection", "error", f.err.Error())
				first = f.err
				continue
			} else {
				err = domain.Errorf(domain.KindUnavailable, "enclave unavailable: %w", f.err)
			}
		} else {
			err = mapError(err)
		}
		if first != nil {
			err = fmt.Errorf("%w (after %v)", err, first)
		}
		return zero, err
	}
}

func once[T any](c *Client, ctx context.Context, fn func(cn *conn) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, ctxError(ctx)
	}
	cn, err := c.get(ctx)
	if err != nil {
		return zero, err
	}
	defer c.put(cn)
	if err := ctx.Err(); err != nil {
		return zero, ctxError(ctx)
	}
	// A connection that the enclave closed while it was idle (a restart),
	// or that holds bytes nobody asked for, is redialled first, so that the
	// request is not failed for a fault that happened before it arrived.
	// The peek is one non-blocking system call, made before every request.
	if cn.isBad() {
		cn.dropBad()
		cn.closeConn()
		if err := cn.connect(); err != nil {
			return zero, cn.fault(fmt.Errorf("redialling: %w", err), true)
		}
	} else if r, ok := cn.check(); !ok {
		cn.poisoned(r, true)
		cn.closeConn()
		if err := cn.connect(); err != nil {
			return zero, cn.fault(fmt.Errorf("redialling: %w", err), true)
		}
	}
	if err := cn.refresh(ctx); err != nil {
		return zero, cn.fault(err, true)
	}
	return fn(cn)
}

func ctxError(ctx context.Context) error {
	return domain.Errorf(domain.KindUnavailable, "enclave unavailable: %w", ctx.Err())
}

// mapError turns enclave error replies into domain errors.
func mapError(err error) error {
	var re *enclavewire.RPCError
	if !errors.As(err, &re) {
		return err
	}
	// A refusal by the enclave's guard carries its kind (403, 409, 503,
	// 400 at the HTTP API).
	if gerr, ok := guard.FromWire(re.Message, sourceMessage(re)); ok {
		return fmt.Errorf("enclave: %w", gerr)
	}
	text := strings.ToLower(strings.Join(strings.Fields(re.Error()), " "))
	switch {
	case strings.Contains(text, "signing version"):
		return domain.Errorf(domain.KindInvalid, "enclave refused the signing version: %w", re)
	case strings.Contains(text, "invalid handle"):
		return domain.Errorf(domain.KindNotFound, "enclave does not hold the key: %w", re)
	}
	return domain.Errorf(domain.KindInternal, "enclave error: %w", re)
}

// sourceMessage is the message of re's source, if any.
func sourceMessage(re *enclavewire.RPCError) string {
	if re.Source == nil {
		return ""
	}
	return re.Source.Message
}
