// Package confidentialspace is the ports.Enclave adapter for a Google Cloud
// Confidential Space enclave running ECAD Labs' enclave-signer (or Sigil's
// mock enclave). It keeps a pool of TCP connections to the enclave, each
// initialized with the Workload Identity Pool provider and KMS key paths and
// holding every loaded key (key handles are per connection), spreads
// requests over idle healthy connections, and redials broken connections in
// the background, re-importing every sealed key.
package confidentialspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Defaults for Config fields left zero.
const (
	DefaultPort        = "2000"
	DefaultConnections = 4
	DefaultDialTimeout = 5 * time.Second
	DefaultRPCTimeout  = 10 * time.Second
	MaxConnections     = 256
)

// Backoff bounds for redialling.
var (
	backoffMin = 50 * time.Millisecond
	backoffMax = time.Second // an enclave that comes back is found within a second
)

// Config configures the enclave client.
type Config struct {
	Host              string
	Port              string // default 2000
	WIPProviderPath   string
	EncryptionKeyPath string
	Connections       int           // pool size, default 4
	DialTimeout       time.Duration // default 5s
	RPCTimeout        time.Duration // per request on the wire, default 10s
	MaxReplyBytes     int           // default rpc.DefaultMaxFrame (1 MiB)
}

func (c *Config) normalize() error {
	switch {
	case strings.TrimSpace(c.Host) == "":
		return domain.Errorf(domain.KindInvalid, "confidential space: missing host")
	case strings.TrimSpace(c.WIPProviderPath) == "":
		return domain.Errorf(domain.KindInvalid, "confidential space: missing wip_provider_path")
	case strings.TrimSpace(c.EncryptionKeyPath) == "":
		return domain.Errorf(domain.KindInvalid, "confidential space: missing encryption_key_path")
	}
	if c.Port == "" {
		c.Port = DefaultPort
	}
	if p, err := strconv.Atoi(c.Port); err != nil || p < 1 || p > 65535 {
		return domain.Errorf(domain.KindInvalid, "confidential space: invalid port %q", c.Port)
	}
	if c.Connections <= 0 {
		c.Connections = DefaultConnections
	}
	if c.Connections > MaxConnections {
		return domain.Errorf(domain.KindInvalid, "confidential space: connections %d exceeds the maximum %d", c.Connections, MaxConnections)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RPCTimeout <= 0 {
		c.RPCTimeout = DefaultRPCTimeout
	}
	if c.MaxReplyBytes <= 0 {
		c.MaxReplyBytes = rpc.DefaultMaxFrame
	}
	return nil
}

// Enclave is a pooled client of the enclave signer. It implements
// ports.Enclave. Create it with New; Close releases it.
type Enclave struct {
	cfg   Config
	addr  string
	creds rpc.Credentials
	log   *slog.Logger

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	jobs      chan *job
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	keys    map[tezos.PublicKeyHash]*keyEntry
	order   []tezos.PublicKeyHash
	healthy int
	everUp  bool
	stateCh chan struct{} // closed and replaced whenever health changes
	workers []*worker
}

type keyEntry struct {
	pub  tezos.PublicKey
	blob []byte
}

var _ ports.Enclave = (*Enclave)(nil)

// New validates cfg and starts the connection pool in the background; it
// does not wait for the enclave. log may be nil.
func New(cfg Config, log *slog.Logger) (*Enclave, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Enclave{
		cfg:     cfg,
		addr:    net.JoinHostPort(cfg.Host, cfg.Port),
		creds:   rpc.Credentials{WIPProviderPath: cfg.WIPProviderPath, EncryptionKeyPath: cfg.EncryptionKeyPath},
		log:     log.With("component", "confidentialspace"),
		ctx:     ctx,
		cancel:  cancel,
		jobs:    make(chan *job),
		keys:    make(map[tezos.PublicKeyHash]*keyEntry),
		stateCh: make(chan struct{}),
	}
	for i := range cfg.Connections {
		w := &worker{e: e, id: i, notify: make(chan struct{}, 1)}
		e.workers = append(e.workers, w)
	}
	e.wg.Add(len(e.workers))
	for _, w := range e.workers {
		go w.loop()
	}
	return e, nil
}

// Close stops the pool and closes every connection. Calls in flight fail.
func (e *Enclave) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		e.mu.Lock()
		for _, w := range e.workers {
			if w.nc != nil {
				w.nc.Close()
			}
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return nil
}

// Ready returns nil when at least one connection is up and initialized.
func (e *Enclave) Ready(ctx context.Context) error {
	e.mu.Lock()
	n := e.healthy
	e.mu.Unlock()
	if n == 0 {
		return domain.Errorf(domain.KindUnavailable, "enclave unavailable: no healthy connection to %s", e.addr)
	}
	return nil
}

// Load imports a sealed blob on one connection (then on all others in the
// background) and returns its public key.
func (e *Enclave) Load(ctx context.Context, blob []byte) (tezos.PublicKey, error) {
	if len(blob) == 0 {
		return tezos.PublicKey{}, domain.Errorf(domain.KindInvalid, "empty sealed key blob")
	}
	blob = append([]byte(nil), blob...)
	v, err := e.do(ctx, func(w *worker) (any, error) {
		var r rpc.ImportResult
		if err := w.call(rpc.NewImport(blob), &r); err != nil {
			return nil, err
		}
		pk, err := r.PublicKey.PublicKey()
		if err != nil {
			return nil, w.malformedReply(err)
		}
		w.setHandle(pk.Hash(), r.Handle)
		return pk, nil
	})
	if err != nil {
		return tezos.PublicKey{}, err
	}
	pk := v.(tezos.PublicKey)
	e.addKey(pk, blob)
	return pk, nil
}

// Generate creates a key of type t in the enclave, loads it everywhere and
// returns it sealed.
func (e *Enclave) Generate(ctx context.Context, t tezos.KeyType) (ports.SealedKey, error) {
	kt, err := rpc.KeyTypeFor(t)
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot generate: %v", err)
	}
	return e.seal(ctx, rpc.NewGenerateAndImport(kt), t, nil)
}

// Import seals a plain private key in the enclave and loads it everywhere.
func (e *Enclave) Import(ctx context.Context, sk tezos.PrivateKey) (ports.SealedKey, error) {
	want, err := sk.Public()
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot import: %v", err)
	}
	wire, err := rpc.NewPrivateKey(sk)
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot import: %v", err)
	}
	defer wire.Zero()
	return e.seal(ctx, rpc.NewImportUnencrypted(wire), sk.Type, &want)
}

// seal runs a request that creates a sealed, loaded key (GenerateAndImport
// or ImportUnencrypted), checks the reply (type t; the public key want when
// known) and makes the key available on every connection.
func (e *Enclave) seal(ctx context.Context, req *rpc.Request, t tezos.KeyType, want *tezos.PublicKey) (ports.SealedKey, error) {
	v, err := e.do(ctx, func(w *worker) (any, error) {
		var r rpc.GenerateAndImportResult
		if err := w.call(req, &r); err != nil {
			return nil, err
		}
		pk, err := r.PublicKey.PublicKeyOf(t)
		if err != nil {
			return nil, w.malformedReply(err)
		}
		if want != nil && !pk.Equal(*want) {
			return nil, domain.Errorf(domain.KindInternal, "enclave returned public key %s for an imported %s key", pk, want)
		}
		if len(r.EncryptedPrivateKey) == 0 {
			return nil, w.malformedReply(errors.New("empty sealed key"))
		}
		w.setHandle(pk.Hash(), r.Handle)
		return ports.SealedKey{PublicKey: pk, Blob: r.EncryptedPrivateKey}, nil
	})
	if err != nil {
		return ports.SealedKey{}, err
	}
	sealed := v.(ports.SealedKey)
	e.addKey(sealed.PublicKey, sealed.Blob)
	return sealed, nil
}

// Sign signs msg with a loaded key.
func (e *Enclave) Sign(ctx context.Context, key tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error) {
	if _, ok := e.lookup(key); !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "key %s is not loaded in the enclave", key)
	}
	if key.Type == tezos.BLS {
		switch version {
		case tezos.SignVersion1, tezos.SignVersion2, tezos.SignVersionLatest:
		default:
			return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "invalid signing version %d for a BLS key (want 1, 2 or 255)", version)
		}
	}
	return e.signature(ctx, key, key.Type, func(h uint64) *rpc.Request { return rpc.NewSign(h, msg, version) })
}

// ProvePossession returns a BLS proof of possession for a loaded tz4 key.
func (e *Enclave) ProvePossession(ctx context.Context, key tezos.PublicKeyHash) (tezos.Signature, error) {
	if key.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "proof of possession needs a BLS (tz4) key, not %s", key)
	}
	if _, ok := e.lookup(key); !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "key %s is not loaded in the enclave", key)
	}
	return e.signature(ctx, key, tezos.BLS, rpc.NewProvePossession)
}

// signature runs a request built from key's handle on this connection and
// returns the signature of type t it answers with.
func (e *Enclave) signature(ctx context.Context, key tezos.PublicKeyHash, t tezos.KeyType, req func(handle uint64) *rpc.Request) (tezos.Signature, error) {
	v, err := e.do(ctx, func(w *worker) (any, error) {
		h, err := w.handle(key)
		if err != nil {
			return nil, err
		}
		var reply rpc.Tagged
		if err := w.call(req(h), &reply); err != nil {
			return nil, err
		}
		sig, err := reply.Signature(t)
		if err != nil {
			return nil, w.malformedReply(err)
		}
		return sig, nil
	})
	if err != nil {
		return tezos.Signature{}, err
	}
	return v.(tezos.Signature), nil
}

func (e *Enclave) lookup(pkh tezos.PublicKeyHash) (*keyEntry, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.keys[pkh]
	return k, ok
}

// addKey records a loaded key and asks every connection to import it.
func (e *Enclave) addKey(pk tezos.PublicKey, blob []byte) {
	pkh := pk.Hash()
	e.mu.Lock()
	if _, ok := e.keys[pkh]; !ok {
		e.keys[pkh] = &keyEntry{pub: pk, blob: append([]byte(nil), blob...)}
		e.order = append(e.order, pkh)
	}
	workers := e.workers
	e.mu.Unlock()
	for _, w := range workers {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

// keyAt returns the i-th key in load order (the list only grows), or false
// past its end.
func (e *Enclave) keyAt(i int) (tezos.PublicKeyHash, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.order) {
		return tezos.PublicKeyHash{}, false
	}
	return e.order[i], true
}

func (e *Enclave) setHealthy(up bool) {
	e.mu.Lock()
	if up {
		e.healthy++
		e.everUp = true
	} else {
		e.healthy--
	}
	close(e.stateCh)
	e.stateCh = make(chan struct{})
	e.mu.Unlock()
}

// job is one request waiting for a connection.
type job struct {
	ctx  context.Context
	run  func(w *worker) (any, error)
	done chan result // buffered: the worker never blocks on it
}

type result struct {
	v   any
	err error
}

// connFault is a broken connection. retryable means no reply was received,
// so the request may be sent again on another connection.
type connFault struct {
	err       error
	retryable bool
}

func (f *connFault) Error() string { return f.err.Error() }
func (f *connFault) Unwrap() error { return f.err }

// do runs fn on an idle healthy connection, retrying once on another
// connection if the first broke before replying, and maps errors to domain
// kinds.
func (e *Enclave) do(ctx context.Context, fn func(w *worker) (any, error)) (any, error) {
	var first error // the fault that caused a retry, kept for the message
	for attempt := 0; ; attempt++ {
		v, err := e.submit(ctx, fn)
		if err == nil {
			return v, nil
		}
		var f *connFault
		if errors.As(err, &f) {
			if f.retryable && attempt == 0 && ctx.Err() == nil {
				e.log.Debug("retrying request on another connection", "err", f.err.Error())
				first = f.err
				continue
			}
			err = domain.Errorf(domain.KindUnavailable, "enclave unavailable: %v", f.err)
		} else {
			err = mapError(err)
		}
		if first != nil {
			err = fmt.Errorf("%w (after %v)", err, first)
		}
		return nil, err
	}
}

func (e *Enclave) submit(ctx context.Context, fn func(w *worker) (any, error)) (any, error) {
	j := &job{ctx: ctx, run: fn, done: make(chan result, 1)}
	for {
		e.mu.Lock()
		healthy, everUp, stateCh := e.healthy, e.everUp, e.stateCh
		e.mu.Unlock()
		if e.ctx.Err() != nil {
			return nil, domain.Errorf(domain.KindUnavailable, "enclave unavailable: client closed")
		}
		if healthy == 0 && everUp {
			return nil, domain.Errorf(domain.KindUnavailable, "enclave unavailable: no healthy connection to %s", e.addr)
		}
		select {
		case e.jobs <- j:
			select {
			case r := <-j.done:
				return r.v, r.err
			case <-ctx.Done():
				return nil, ctxError(ctx)
			}
		case <-stateCh:
		case <-ctx.Done():
			return nil, ctxError(ctx)
		case <-e.ctx.Done():
			return nil, domain.Errorf(domain.KindUnavailable, "enclave unavailable: client closed")
		}
	}
}

func ctxError(ctx context.Context) error {
	return domain.Errorf(domain.KindUnavailable, "enclave unavailable: %w", ctx.Err())
}

// mapError turns enclave error replies into domain errors.
func mapError(err error) error {
	var re *rpc.RPCError
	if !errors.As(err, &re) {
		return err
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

// worker owns one connection slot: it dials, initializes, imports keys and
// serves jobs, and redials when the connection breaks.
type worker struct {
	e      *Enclave
	id     int
	notify chan struct{}

	nc      net.Conn // guarded by e.mu for Close; used by the worker goroutine
	broken  bool
	synced  int  // keys of e.order already considered for import on this connection
	counted bool // included in e.healthy
	hmu     sync.Mutex
	handles map[tezos.PublicKeyHash]uint64
}

func (w *worker) loop() {
	defer w.e.wg.Done()
	log := w.e.log.With("conn", w.id)
	attempt := 0
	for {
		if w.e.ctx.Err() != nil {
			return
		}
		if err := w.connect(); err != nil {
			w.closeConn()
			if w.e.ctx.Err() != nil {
				return
			}
			if attempt == 0 {
				log.Warn("enclave connection failed", "addr", w.e.addr, "err", err.Error())
			} else {
				log.Debug("enclave connection failed", "addr", w.e.addr, "attempt", attempt+1, "err", err.Error())
			}
			if !w.sleepUnlessPeerUp(backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		if attempt > 0 {
			log.Info("enclave connection restored", "addr", w.e.addr, "keys", w.handleCount())
		} else {
			log.Debug("enclave connection up", "addr", w.e.addr, "keys", w.handleCount())
		}
		attempt = 0
		w.e.setHealthy(true)
		w.counted = true
		w.serve()
		w.uncount()
		w.closeConn()
		if w.e.ctx.Err() != nil {
			return
		}
		log.Warn("enclave connection lost; redialling", "addr", w.e.addr)
		if !w.sleep(backoff(0)) {
			return
		}
	}
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
func (w *worker) sleepUnlessPeerUp(d time.Duration) bool {
	w.e.mu.Lock()
	ch := w.e.stateCh
	w.e.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ch:
	case <-w.e.ctx.Done():
		return false
	}
	return true
}

func (w *worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.e.ctx.Done():
		return false
	}
}

func (w *worker) connect() error {
	d := net.Dialer{Timeout: w.e.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(w.e.ctx, "tcp", w.e.addr)
	if err != nil {
		return err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	w.e.mu.Lock()
	if w.e.ctx.Err() != nil {
		w.e.mu.Unlock()
		nc.Close()
		return w.e.ctx.Err()
	}
	w.nc = nc
	w.e.mu.Unlock()
	w.broken = false
	w.hmu.Lock()
	w.handles = make(map[tezos.PublicKeyHash]uint64)
	w.hmu.Unlock()

	w.synced = 0
	if err := w.call(rpc.NewInitialize(w.e.creds), nil); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	return nil
}

// syncStep imports the next known key this connection does not hold yet;
// it reports false when the connection holds every key. An enclave error on
// one key is logged and the key skipped (it is imported on first use);
// a connection fault marks the connection broken.
func (w *worker) syncStep() bool {
	pkh, ok := w.e.keyAt(w.synced)
	if !ok {
		return false
	}
	w.synced++
	if _, held := w.getHandle(pkh); held {
		return true
	}
	if _, err := w.importKey(pkh); err != nil && !w.broken {
		w.e.log.Error("cannot import key on enclave connection", "conn", w.id, "key", pkh.String(), "err", err.Error())
	}
	return true
}

// idleProbe is how often an idle connection checks that the enclave is
// still there, so that a restart is noticed (and /healthz tells) before the
// next request.
const idleProbe = time.Second

// serve runs jobs until the connection breaks or the client closes. Jobs
// always come first: keys this connection does not hold yet are imported one
// at a time while it is idle (and on first use by a job).
func (w *worker) serve() {
	probe := time.NewTicker(idleProbe)
	defer probe.Stop()
	for !w.broken {
		select {
		case <-w.e.ctx.Done():
			return
		case j := <-w.e.jobs:
			w.runJob(j)
			continue
		default:
		}
		if w.syncStep() {
			continue
		}
		select {
		case <-w.e.ctx.Done():
			return
		case <-w.notify:
		case <-probe.C:
			if !w.alive() {
				w.broken = true
				w.e.log.Warn("idle enclave connection found closed", "conn", w.id, "addr", w.e.addr)
			}
		case j := <-w.e.jobs:
			w.runJob(j)
		}
	}
}

// runJob runs one job and answers it.
func (w *worker) runJob(j *job) {
	r := w.execute(j)
	if w.broken {
		// Leave the healthy count before answering, so that a caller who
		// sees this failure also sees the pool's health reflect it.
		w.uncount()
	}
	j.done <- r
}

// execute runs one job. A connection that the enclave closed while it was
// idle (an enclave restart) is redialled first, so that the job is not
// failed for a fault that happened before it arrived.
func (w *worker) execute(j *job) result {
	if err := j.ctx.Err(); err != nil {
		return result{err: ctxError(j.ctx)}
	}
	if !w.alive() {
		w.e.log.Info("enclave connection was closed while idle; redialling", "conn", w.id, "addr", w.e.addr)
		w.closeConn()
		if err := w.connect(); err != nil {
			return result{err: w.fault(fmt.Errorf("redialling: %w", err), true)}
		}
	}
	v, err := j.run(w)
	return result{v: v, err: err}
}

// uncount removes this connection from the pool's healthy count, once.
func (w *worker) uncount() {
	if w.counted {
		w.counted = false
		w.e.setHealthy(false)
	}
}

// alive reports whether the connection is still open: between requests the
// enclave never sends anything, so a connection with something to read is
// one the peer closed (or on which it broke the protocol).
func (w *worker) alive() bool {
	if w.nc == nil || w.broken {
		return false
	}
	return connAlive(w.nc)
}

func (w *worker) closeConn() {
	w.e.mu.Lock()
	if w.nc != nil {
		w.nc.Close()
		w.nc = nil
	}
	w.e.mu.Unlock()
	w.hmu.Lock()
	w.handles = nil
	w.hmu.Unlock()
}

// call sends one request and decodes its reply into out (nil: Ok must be
// null). Enclave error replies are returned as *rpc.RPCError; connection
// problems as *connFault, after which the connection is marked broken.
func (w *worker) call(req *rpc.Request, out any) error {
	payload, err := rpc.EncodeRequest(req)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "encoding enclave request: %v", err)
	}
	nc := w.nc
	if nc == nil || w.broken {
		clear(payload)
		return w.fault(errors.New("connection closed"), true)
	}
	_ = nc.SetDeadline(time.Now().Add(w.e.cfg.RPCTimeout))
	err = rpc.WriteFrame(nc, payload)
	clear(payload) // may hold a plain private key
	if err != nil {
		return w.fault(fmt.Errorf("%s request: %w", req.Method(), err), true)
	}
	frame, err := rpc.ReadFrame(nc, w.e.cfg.MaxReplyBytes)
	if err != nil {
		return w.fault(fmt.Errorf("%s reply: %w", req.Method(), err), true)
	}
	_ = nc.SetDeadline(time.Time{})
	err = rpc.DecodeReply(frame, out)
	var re *rpc.RPCError
	if errors.As(err, &re) {
		return re
	}
	if err != nil {
		return w.fault(fmt.Errorf("%s reply: %w", req.Method(), err), false)
	}
	return nil
}

func (w *worker) fault(err error, retryable bool) error {
	w.broken = true
	return &connFault{err: err, retryable: retryable}
}

// malformedReply is a well-framed reply whose content is wrong (bad key,
// wrong type): the connection can no longer be trusted.
func (w *worker) malformedReply(err error) error {
	return w.fault(fmt.Errorf("%w: %v", rpc.ErrMalformed, err), false)
}

// handle returns this connection's handle for pkh, importing the key first
// if needed.
func (w *worker) handle(pkh tezos.PublicKeyHash) (uint64, error) {
	if h, ok := w.getHandle(pkh); ok {
		return h, nil
	}
	return w.importKey(pkh)
}

func (w *worker) importKey(pkh tezos.PublicKeyHash) (uint64, error) {
	ent, ok := w.e.lookup(pkh)
	if !ok {
		return 0, domain.Errorf(domain.KindNotFound, "key %s is not loaded in the enclave", pkh)
	}
	var r rpc.ImportResult
	if err := w.call(rpc.NewImport(ent.blob), &r); err != nil {
		return 0, err
	}
	pk, err := r.PublicKey.PublicKey()
	if err != nil {
		return 0, w.malformedReply(err)
	}
	if !pk.Equal(ent.pub) {
		return 0, domain.Errorf(domain.KindInternal, "enclave opened the sealed key of %s as %s", pkh, pk.Hash())
	}
	w.setHandle(pkh, r.Handle)
	return r.Handle, nil
}

func (w *worker) getHandle(pkh tezos.PublicKeyHash) (uint64, bool) {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	h, ok := w.handles[pkh]
	return h, ok
}

func (w *worker) setHandle(pkh tezos.PublicKeyHash, h uint64) {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	if w.handles != nil {
		w.handles[pkh] = h
	}
}

func (w *worker) handleCount() int {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	return len(w.handles)
}
