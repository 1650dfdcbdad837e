// Package enclaveserver is a working stand-in for the Confidential Space
// enclave signer: a TCP server speaking the same framed CBOR protocol
// (adapters/confidentialspace/rpc), with per-connection key chains, real key
// generation and signing for all four Tezos key types (domain/tezos), and a
// pluggable KMS stand-in (pass-through or local AES-256-GCM) that seals keys
// into blobs. It exists for development and tests; it offers none of the
// enclave's isolation.
package enclaveserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Options configures a Server.
type Options struct {
	// KMS seals and opens key blobs; nil means PassthroughKMS. It is
	// ignored when KMSProvider is set.
	KMS KMS
	// KMSProvider, if set, gives each session its own KMS from its
	// Initialize payload (the real Cloud KMS port); nil means StaticKMS{KMS}.
	KMSProvider KMSProvider
	// KMSTimeout bounds each KMS call and each KMSProvider.ForSession;
	// default 30 s.
	KMSTimeout time.Duration
	// ReplyDelay is slept before each reply is written (load tests). It only
	// delays the connection it applies to.
	ReplyDelay time.Duration
	// KMSDelay is slept around each Seal/Open call (load tests).
	KMSDelay time.Duration
	// MaxFrame bounds request frames; a larger announced length closes the
	// connection. Default enclavewire.DefaultMaxFrame.
	MaxFrame int
	// Logger receives connection and request logs (never key material).
	// Nil discards them.
	Logger *slog.Logger
	// Mode is the platform whose Initialize payload the server accepts:
	// ModeConfidentialSpace (the default, Workload Identity provider and
	// KMS key paths) or ModeNitro (AWS credentials, KMS key id, region).
	Mode string

	// The connection guard (guard.go). MaxConns bounds open connections
	// (default: the open-file limit minus a reserve, at most
	// DefaultMaxConnsCap). HandshakeTimeout bounds the time from accept to
	// a complete Initialize, FrameTimeout a frame once its first byte
	// arrived, WriteTimeout a reply's write (defaults 10 s each).
	// IdleTimeout closes an initialized session without a request for that
	// long; 0 (the default) never does. LogInterval rate-limits the guard's
	// log lines per kind (default 10 s).
	MaxConns         int
	HandshakeTimeout time.Duration
	FrameTimeout     time.Duration
	WriteTimeout     time.Duration
	IdleTimeout      time.Duration
	LogInterval      time.Duration

	// Tamper, if set, may rewrite each encoded reply before it is written
	// (method is the request's): hostile-enclave tests only.
	Tamper func(method string, reply []byte) []byte
}

// Platform modes (Options.Mode).
const (
	ModeConfidentialSpace = "confidentialspace"
	ModeNitro             = "nitro"
)

// Server serves the enclave protocol. Create it with NewServer.
type Server struct {
	opts Options
	log  *slog.Logger
	// ctx ends when the server closes, cutting short KMS calls in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	closed    bool
	wg        sync.WaitGroup

	stats serverStats
	rl    rateLog
}

// NewServer returns a server with opts.
func NewServer(opts Options) *Server {
	if opts.KMS == nil {
		opts.KMS = PassthroughKMS{}
	}
	if opts.KMSProvider == nil {
		opts.KMSProvider = StaticKMS{KMS: opts.KMS}
	}
	if opts.KMSTimeout <= 0 {
		opts.KMSTimeout = 30 * time.Second
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = enclavewire.DefaultMaxFrame
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = defaultMaxConns()
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&opts.HandshakeTimeout, DefaultHandshakeTimeout}, {&opts.FrameTimeout, DefaultFrameTimeout},
		{&opts.WriteTimeout, DefaultWriteTimeout}, {&opts.LogInterval, DefaultLogInterval}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if opts.IdleTimeout < 0 {
		opts.IdleTimeout = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:      opts,
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		rl:        rateLog{interval: opts.LogInterval},
	}
}

// Options returns the server's options with their defaults filled in.
func (s *Server) Options() Options { return s.opts }

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("enclaveserver: server closed")

// Serve accepts connections on l until Close, handling each in its own
// goroutine under the connection guard (guard.go): no client behaviour,
// running out of file descriptors included, ends it. It always returns a
// non-nil error; after Close it is ErrServerClosed, otherwise the
// listener was closed by someone else.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	return s.acceptLoop(l)
}

// Close stops every listener, closes every connection and waits for their
// goroutines to end. Key chains are zeroed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	for sess := range s.sessions {
		sess.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// SessionInfo describes one live connection, for tests.
type SessionInfo struct {
	Remote      string
	Initialized bool
	Keys        []tezos.PublicKeyHash // the key chain, by handle
}

// Sessions reports the live connections and their key chains.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	out := make([]SessionInfo, 0, len(list))
	for _, sess := range list {
		sess.mu.Lock()
		info := SessionInfo{Remote: sess.conn.RemoteAddr().String(), Initialized: sess.initialized}
		for _, k := range sess.keys {
			info.Keys = append(info.Keys, k.pkh)
		}
		sess.mu.Unlock()
		out = append(out, info)
	}
	return out
}

type loadedKey struct {
	sk  tezos.PrivateKey
	pk  tezos.PublicKey
	pkh tezos.PublicKeyHash
}

// session is one connection's state: the enclave keeps nothing global.
type session struct {
	srv      *Server
	conn     net.Conn
	accepted time.Time
	phase    atomic.Int32 // phaseNew, phaseInitializing, phaseInitialized
	evicted  atomic.Bool  // closed by the guard to make room
	in       frameReader  // the session goroutine's
	wdl      time.Time    // the connection's write deadline now

	mu          sync.Mutex // guards initialized and keys for Sessions()
	initialized bool
	keys        []loadedKey
	kms         SessionKMS // set by Initialize
}

func (c *session) serve() {
	log := c.srv.log.With("remote", c.conn.RemoteAddr().String())
	log.Debug("connection opened")
	defer func() {
		c.conn.Close()
		c.mu.Lock()
		for i := range c.keys {
			c.keys[i].sk.Zero()
		}
		c.keys = nil
		kms := c.kms
		c.kms = nil
		c.mu.Unlock()
		if kms != nil {
			if err := kms.Close(); err != nil {
				log.Info("closing the session's KMS failed", "error", err.Error())
			}
		}
		log.Debug("connection closed")
	}()
	for {
		frame, err := c.readRequest()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !c.evicted.Load() && !isTimeout(err) {
				log.Info("closing connection", "reason", err.Error())
			}
			return
		}
		reply, method := c.handle(frame, log)
		clear(frame) // may hold a plain private key
		if d := c.srv.opts.ReplyDelay; d > 0 {
			time.Sleep(d)
		}
		if t := c.srv.opts.Tamper; t != nil {
			reply = t(method, reply)
		}
		if err := c.writeReply(reply); err != nil {
			if !isTimeout(err) {
				log.Info("write failed", "error", err.Error())
			}
			return
		}
	}
}

// handle runs one request and returns the encoded reply and the request's
// method.
func (c *session) handle(frame []byte, log *slog.Logger) ([]byte, string) {
	req, err := enclavewire.DecodeRequest(frame)
	if err != nil {
		log.Info("bad request", "error", err.Error())
		return encodeErr(enclavewire.NewError("deserialization error", err.Error())), ""
	}
	method := req.Method()
	c.srv.stats.request(method)
	ok, rerr := c.dispatch(req)
	if req.ImportUnencrypted != nil {
		req.ImportUnencrypted.Zero()
	}
	if rerr != nil {
		log.Debug("request failed", "method", method, "error", rerr.Error())
		return encodeErr(rerr), method
	}
	log.Debug("request", "method", method)
	b, err := enclavewire.EncodeOk(ok)
	if err != nil {
		return encodeErr(enclavewire.NewError("serialization error", err.Error())), method
	}
	return b, method
}

func encodeErr(e *enclavewire.RPCError) []byte {
	b, err := enclavewire.EncodeErr(e)
	if err != nil { // cannot happen for text messages
		b, _ = enclavewire.EncodeErr(enclavewire.NewError("internal error"))
	}
	return b
}

// Error messages follow the Rust enclave's Display texts.
var (
	errUninitialized      = enclavewire.NewError("uninitialized")
	errAlreadyInitialized = enclavewire.NewError("already initialized")
	errInvalidHandle      = enclavewire.NewError("signer error", "invalid handle")
	errPopUnsupported     = enclavewire.NewError("signer error", "Proof of possession is not supported")
	errSigningVersion     = enclavewire.NewError("signer error", "invalid signing version")
)

func (c *session) dispatch(req *enclavewire.Request) (any, *enclavewire.RPCError) {
	if req.Initialize != nil || req.InitializeAWS != nil {
		// Only this session's goroutine initializes; the lock is for
		// Sessions(), and is not held across the KMS provider's calls.
		c.mu.Lock()
		initialized := c.initialized
		c.mu.Unlock()
		if initialized {
			return nil, errAlreadyInitialized
		}
		if rerr := c.srv.checkInitialize(req); rerr != nil {
			return nil, rerr
		}
		// Initializing: the guard no longer evicts this connection.
		c.phase.Store(phaseInitializing)
		// The session's KMS comes from the Confidential Space payload; in
		// Nitro mode only the static stand-ins run (main refuses --kms gcp
		// with --mode nitro), and they ignore it.
		var creds enclavewire.Credentials
		if req.Initialize != nil {
			creds = *req.Initialize
		}
		kms, rerr := c.sessionKMS(creds)
		if rerr != nil {
			c.phase.Store(phaseNew)
			return nil, rerr
		}
		c.mu.Lock()
		c.kms, c.initialized = kms, true
		c.mu.Unlock()
		c.phase.Store(phaseInitialized)
		return nil, nil
	}
	c.mu.Lock()
	initialized := c.initialized
	c.mu.Unlock()
	if !initialized {
		return nil, errUninitialized
	}

	switch {
	case req.Import != nil:
		k, err := c.open(req.Import)
		if err != nil {
			return nil, err
		}
		pkw, _ := enclavewire.TaggedFromPublicKey(k.pk)
		return enclavewire.ImportResult{PublicKey: pkw, Handle: c.add(k)}, nil

	case req.ImportUnencrypted != nil:
		t, err := req.ImportUnencrypted.Tagged()
		if err != nil {
			return nil, enclavewire.NewError("deserialization error", err.Error())
		}
		sk, perr := t.PrivateKey() // copies; the request is zeroed by handle
		if perr != nil {
			return nil, enclavewire.NewError("deserialization error", perr.Error())
		}
		return c.sealAndMaybeAdd(sk, true)

	case req.Generate != nil || req.GenerateAndImport != nil:
		name := req.Generate
		if name == nil {
			name = req.GenerateAndImport
		}
		kt, err := name.Tezos()
		if err != nil {
			return nil, enclavewire.NewError("deserialization error", err.Error())
		}
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		if err != nil {
			return nil, enclavewire.NewError("signer error", "key generation failed")
		}
		return c.sealAndMaybeAdd(sk, req.GenerateAndImport != nil)

	case req.Sign != nil:
		k, ok := c.key(req.Sign.Handle)
		if !ok {
			return nil, errInvalidHandle
		}
		return sign(k.sk, req.Sign.Message, req.Sign.Version)

	case req.SignWith != nil:
		k, err := c.open(req.SignWith.EncryptedPrivateKey)
		if err != nil {
			return nil, err
		}
		defer k.sk.Zero()
		return sign(k.sk, req.SignWith.Message, req.SignWith.Version)

	case req.PublicKey != nil:
		k, ok := c.key(*req.PublicKey)
		if !ok {
			return nil, errInvalidHandle
		}
		pkw, _ := enclavewire.TaggedFromPublicKey(k.pk)
		return pkw, nil

	case req.PublicKeyFrom != nil:
		k, err := c.open(req.PublicKeyFrom)
		if err != nil {
			return nil, err
		}
		k.sk.Zero()
		pkw, _ := enclavewire.TaggedFromPublicKey(k.pk)
		return pkw, nil

	case req.ProvePossession != nil:
		k, ok := c.key(*req.ProvePossession)
		if !ok {
			return nil, errInvalidHandle
		}
		if k.sk.Type != tezos.BLS {
			return nil, errPopUnsupported
		}
		proof, err := k.sk.ProvePossession()
		if err != nil {
			return nil, enclavewire.NewError("signer error", "BLST error")
		}
		t, _ := enclavewire.TaggedFromSignature(proof)
		return t, nil
	}
	return nil, enclavewire.NewError("deserialization error", "unknown request")
}

// checkInitialize accepts the Initialize payload of the server's platform
// only, with every field the enclave needs present.
func (s *Server) checkInitialize(req *enclavewire.Request) *enclavewire.RPCError {
	if s.opts.Mode == ModeNitro {
		a := req.InitializeAWS
		if a == nil {
			return enclavewire.NewError("deserialization error", "invalid credentials: this enclave runs in AWS Nitro mode and expects AWS credentials")
		}
		if a.AccessKeyID == "" || a.SecretAccessKey == "" || a.EncryptionKeyID == "" || a.Region == "" {
			return enclavewire.NewError("encryption error", "invalid credentials: access_key_id, secret_access_key, encryption_key_id and region are required")
		}
		return nil
	}
	if req.Initialize == nil {
		return enclavewire.NewError("deserialization error", "invalid credentials: this enclave runs in Confidential Space mode and expects wip_provider_path and encryption_key_path")
	}
	if req.Initialize.WIPProviderPath == "" || req.Initialize.EncryptionKeyPath == "" {
		return enclavewire.NewError("encryption error", "invalid credentials: wip_provider_path and encryption_key_path are required")
	}
	return nil
}

func sign(sk tezos.PrivateKey, msg []byte, version *uint8) (any, *enclavewire.RPCError) {
	v := tezos.SignVersionLatest
	if version != nil {
		v = *version
	}
	sig, err := sk.Sign(msg, v)
	if errors.Is(err, tezos.ErrInvalidSigningVersion) {
		return nil, errSigningVersion
	}
	if err != nil {
		return nil, enclavewire.NewError("signer error", "signature error")
	}
	t, terr := enclavewire.TaggedFromSignature(sig)
	if terr != nil {
		return nil, enclavewire.NewError("signer error", "signature error")
	}
	return t, nil
}

func (c *session) key(h uint64) (loadedKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h >= uint64(len(c.keys)) {
		return loadedKey{}, false
	}
	return c.keys[h], true
}

func (c *session) add(k loadedKey) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys = append(c.keys, k)
	return uint64(len(c.keys) - 1)
}

// open unseals a blob into a key; the caller owns (and zeroes) k.sk.
func (c *session) open(blob []byte) (loadedKey, *enclavewire.RPCError) {
	c.kmsDelay()
	c.srv.stats.kms.Add(1)
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.KMSTimeout)
	plain, err := c.kms.Open(ctx, blob)
	cancel()
	if err != nil {
		return loadedKey{}, enclavewire.NewError("encryption error", err.Error())
	}
	defer clear(plain)
	t, err := enclavewire.UnmarshalPrivateKey(plain)
	if err != nil {
		return loadedKey{}, enclavewire.NewError("deserialization error", "sealed blob does not hold a private key")
	}
	sk, err := t.PrivateKey()
	clear(t.Bytes)
	if err != nil {
		return loadedKey{}, enclavewire.NewError("deserialization error", err.Error())
	}
	return newLoaded(sk)
}

func newLoaded(sk tezos.PrivateKey) (loadedKey, *enclavewire.RPCError) {
	pk, err := sk.Public()
	if err != nil {
		sk.Zero()
		return loadedKey{}, enclavewire.NewError("signer error", "invalid private key")
	}
	return loadedKey{sk: sk, pk: pk, pkh: pk.Hash()}, nil
}

// sealAndMaybeAdd seals sk; with add it also loads it and returns a
// GenerateAndImportResult, else a GenerateResult (and zeroes sk).
func (c *session) sealAndMaybeAdd(sk tezos.PrivateKey, add bool) (any, *enclavewire.RPCError) {
	k, rerr := newLoaded(sk)
	if rerr != nil {
		return nil, rerr
	}
	w, err := enclavewire.NewPrivateKey(sk)
	if err != nil {
		sk.Zero()
		return nil, enclavewire.NewError("serialization error", err.Error())
	}
	plain, err := enclavewire.MarshalPrivateKey(w)
	w.Zero()
	if err != nil {
		sk.Zero()
		return nil, enclavewire.NewError("serialization error", err.Error())
	}
	c.kmsDelay()
	c.srv.stats.kms.Add(1)
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.KMSTimeout)
	blob, err := c.kms.Seal(ctx, plain)
	cancel()
	clear(plain)
	if err != nil {
		sk.Zero()
		return nil, enclavewire.NewError("encryption error", err.Error())
	}
	pkw, _ := enclavewire.TaggedFromPublicKey(k.pk)
	if !add {
		sk.Zero()
		return enclavewire.GenerateResult{EncryptedPrivateKey: blob, PublicKey: pkw}, nil
	}
	return enclavewire.GenerateAndImportResult{EncryptedPrivateKey: blob, PublicKey: pkw, Handle: c.add(k)}, nil
}

func (c *session) kmsDelay() {
	if d := c.srv.opts.KMSDelay; d > 0 {
		time.Sleep(d)
	}
}

// ListenAndServe listens on addr and serves until ctx is done, then closes
// the server. ready, if not nil, receives the bound address once listening.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(net.Addr)) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if ready != nil {
		ready(l.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	select {
	case <-ctx.Done():
		s.Close()
		<-errc
		return nil
	case err := <-errc:
		s.Close()
		return err
	}
}
