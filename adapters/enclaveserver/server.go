// Package enclaveserver is the network side of Sigil's enclave
// (cmd/sigil-enclave): a server of the enclave-signer protocol
// (adapters/enclavewire: 4-byte length + CBOR frames) over TCP, or over the
// attested channel (TLS 1.3, adapters/securechannel: ServeAttested), one
// domain/enclave session per connection. It reads and writes frames,
// decodes each request, calls the session (the enclave's rules are the
// domain's) and encodes its answer; and it keeps the connection guard
// (guard.go: a connection cap with eviction, handshake, frame, write and
// idle timeouts, backoff on accept errors, counters, rate-limited logs)
// that keeps the enclave serving its daemon whatever other clients do.
package enclaveserver

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// Options configures a Server.
type Options struct {
	// Enclave is the enclave's rules (required): each connection gets one
	// of its sessions.
	Enclave *enclave.Enclave
	// ReplyDelay is slept before each reply is written (load tests). It only
	// delays the connection it applies to.
	ReplyDelay time.Duration
	// MaxFrame bounds request frames; a larger announced length closes the
	// connection. Default enclavewire.DefaultMaxFrame.
	MaxFrame int
	// Logger receives connection and request logs (never key material).
	// Nil discards them.
	Logger *slog.Logger

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

// Server serves the enclave protocol. Create it with New.
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

// ErrNoEnclave is returned by New when Options.Enclave is nil.
var ErrNoEnclave = errors.New("enclaveserver: no enclave (Options.Enclave)")

// New returns a server with opts.
func New(opts Options) (*Server, error) {
	if opts.Enclave == nil {
		return nil, ErrNoEnclave
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
	}, nil
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
func (s *Server) Serve(l net.Listener) error { return s.serve(l, nil) }

// Handshaker runs the attested channel's handshake over a raw connection
// (securechannel.Server): it returns the TLS connection and the pin of the
// client's key, or an error after closing raw. ctx bounds it.
type Handshaker interface {
	Handshake(ctx context.Context, raw net.Conn) (*tls.Conn, attestation.Pin, error)
}

// ServeAttested is Serve for the attested channel: each connection's TLS
// handshake (hs) must complete, and then its Initialize, within the
// guard's HandshakeTimeout of its accept, and a connection still in its
// handshake may be evicted as one that has not initialized. Its session is
// on the attested channel, with the client's pin. A refused handshake is
// counted and logged at most once per LogInterval.
func (s *Server) ServeAttested(l net.Listener, hs Handshaker) error {
	if hs == nil {
		return errors.New("enclaveserver: ServeAttested without a handshaker")
	}
	return s.serve(l, hs)
}

func (s *Server) serve(l net.Listener, hs Handshaker) error {
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

	return s.acceptLoop(l, hs)
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
		sess.raw.Close()
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
		var info enclave.SessionInfo
		if d := sess.dom.Load(); d != nil {
			info = d.Info()
		}
		out = append(out, SessionInfo{Remote: sess.raw.RemoteAddr().String(), Initialized: info.Initialized, Keys: info.Keys})
	}
	return out
}

// session is one connection: the domain's session and the guard's state.
type session struct {
	srv *Server
	// raw is the accepted connection, closed to end the session (a TLS
	// session ends without a close_notify: the enclave sends nothing a
	// client did not ask for); conn carries the frames: raw, or the TLS
	// connection over it.
	raw, conn net.Conn
	hs        Handshaker // nil: the plain protocol
	// dom is the domain's session: set at accept on a plain connection,
	// after the handshake on the attested channel.
	dom      atomic.Pointer[enclave.Session]
	accepted time.Time
	phase    atomic.Int32 // phaseNew, phaseInitializing, phaseInitialized
	evicted  atomic.Bool  // closed by the guard to make room
	in       frameReader  // the session goroutine's
	wdl      time.Time    // the connection's write deadline now
}

func (c *session) serve() {
	log := c.srv.log.With("remote", c.raw.RemoteAddr().String())
	log.Debug("connection opened")
	defer func() {
		c.raw.Close()
		if d := c.dom.Load(); d != nil {
			if err := d.Close(); err != nil {
				log.Info("closing the session's KMS failed", "error", err.Error())
			}
		}
		log.Debug("connection closed")
	}()
	if c.hs != nil && !c.handshake(log) {
		return
	}
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

// handshake runs the attested channel's handshake, bounded by the
// handshake deadline (from the accept) and by the server's life, and
// starts the session on the attested channel. A failure is counted and
// logged (rate-limited) unless the guard or Close ended it.
func (c *session) handshake(log *slog.Logger) bool {
	ctx, cancel := context.WithDeadline(c.srv.ctx, c.accepted.Add(c.srv.opts.HandshakeTimeout))
	tc, pin, err := c.hs.Handshake(ctx, c.raw)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	if err != nil {
		switch {
		case c.evicted.Load() || c.srv.ctx.Err() != nil:
		case timedOut || isTimeout(err):
			c.srv.timedOut("tls_handshake", c)
		default:
			c.srv.handshakeRefused(c, err)
		}
		return false
	}
	c.conn = tc
	c.dom.Store(c.srv.opts.Enclave.NewSession(enclave.Channel{Attested: true, ClientPin: pin}))
	log.Debug("attested channel up", "client_pin", pin.String())
	return true
}

// handle runs one request and returns the encoded reply and the request's
// method.
func (c *session) handle(frame []byte, log *slog.Logger) ([]byte, string) {
	req, err := enclavewire.DecodeRequest(frame)
	if err != nil {
		log.Info("bad request", "error", err.Error())
		return encodeErr(enclavewire.NewError(enclave.CategoryDeserialization, err.Error())), ""
	}
	method := req.Method()
	c.srv.stats.request(method)
	ok, err := c.dispatch(req)
	if req.ImportUnencrypted != nil {
		req.ImportUnencrypted.Zero()
	}
	if err != nil {
		log.Debug("request failed", "method", method, "error", err.Error())
		return encodeErr(wireError(err)), method
	}
	log.Debug("request", "method", method)
	b, err := enclavewire.EncodeOk(ok)
	if err != nil {
		return encodeErr(enclavewire.NewError(enclave.CategorySerialization, err.Error())), method
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

// wireError is the protocol's form of a session's error (an
// *enclave.Error, whose chain it copies).
func wireError(err error) *enclavewire.RPCError {
	var e *enclave.Error
	if !errors.As(err, &e) {
		return enclavewire.NewError("internal error", err.Error())
	}
	out := &enclavewire.RPCError{Message: e.Message}
	for cur, w := e.Source, out; cur != nil; cur = cur.Source {
		w.Source = &enclavewire.RPCError{Message: cur.Message}
		w = w.Source
	}
	return out
}

// dispatch decodes the request's arguments into the domain's terms, calls
// the session, and returns the reply's Ok value.
func (c *session) dispatch(req *enclavewire.Request) (any, error) {
	ctx := c.srv.ctx // KMS calls end when the server closes
	d := c.dom.Load()
	switch {
	case req.AttestationToken != nil:
		tok, err := d.AttestationToken()
		if err != nil {
			return nil, err
		}
		return enclavewire.AttestationTokenResult{Token: tok}, nil

	case req.Initialize != nil || req.InitializeAWS != nil:
		if d.Initialized() {
			return nil, enclave.ErrAlreadyInitialized
		}
		// Initializing: the guard no longer evicts this connection.
		c.phase.Store(phaseInitializing)
		if err := d.Initialize(ctx, credentials(req)); err != nil {
			c.phase.Store(phaseNew)
			return nil, err
		}
		c.phase.Store(phaseInitialized)
		return nil, nil

	case req.Import != nil:
		k, err := d.Import(ctx, req.Import)
		if err != nil {
			return nil, err
		}
		return enclavewire.ImportResult{PublicKey: taggedKey(k.PublicKey), Handle: k.Handle}, nil

	case req.ImportUnencrypted != nil:
		t, err := req.ImportUnencrypted.Tagged()
		if err != nil {
			return nil, enclave.NewError(enclave.CategoryDeserialization, err.Error())
		}
		kt, err := t.Type.Tezos()
		if err != nil {
			return nil, enclave.NewError(enclave.CategoryDeserialization, err.Error())
		}
		k, err := d.ImportUnencrypted(ctx, kt, t.Bytes) // the request is zeroed by handle
		if err != nil {
			return nil, err
		}
		return enclavewire.GenerateAndImportResult{EncryptedPrivateKey: k.Blob, PublicKey: taggedKey(k.PublicKey), Handle: k.Handle}, nil

	case req.Generate != nil || req.GenerateAndImport != nil:
		name, load := req.Generate, false
		if name == nil {
			name, load = req.GenerateAndImport, true
		}
		kt, err := name.Tezos()
		if err != nil {
			return nil, enclave.NewError(enclave.CategoryDeserialization, err.Error())
		}
		if !load {
			k, err := d.Generate(ctx, kt)
			if err != nil {
				return nil, err
			}
			return enclavewire.GenerateResult{EncryptedPrivateKey: k.Blob, PublicKey: taggedKey(k.PublicKey)}, nil
		}
		k, err := d.GenerateAndImport(ctx, kt)
		if err != nil {
			return nil, err
		}
		return enclavewire.GenerateAndImportResult{EncryptedPrivateKey: k.Blob, PublicKey: taggedKey(k.PublicKey), Handle: k.Handle}, nil

	case req.Sign != nil:
		sig, err := d.Sign(ctx, req.Sign.Handle, req.Sign.Message, version(req.Sign.Version))
		if err != nil {
			return nil, err
		}
		return taggedSignature(sig), nil

	case req.SignWith != nil:
		sig, err := d.SignWith(ctx, req.SignWith.EncryptedPrivateKey, req.SignWith.Message, version(req.SignWith.Version))
		if err != nil {
			return nil, err
		}
		return taggedSignature(sig), nil

	case req.PublicKey != nil:
		pk, err := d.PublicKey(*req.PublicKey)
		if err != nil {
			return nil, err
		}
		return taggedKey(pk), nil

	case req.PublicKeyFrom != nil:
		pk, err := d.PublicKeyFrom(ctx, req.PublicKeyFrom)
		if err != nil {
			return nil, err
		}
		return taggedKey(pk), nil

	case req.ProvePossession != nil:
		proof, err := d.ProvePossession(*req.ProvePossession)
		if err != nil {
			return nil, err
		}
		return taggedSignature(proof), nil
	}
	return nil, enclave.NewError(enclave.CategoryDeserialization, "unknown request")
}

// credentials is the Initialize payload in the domain's terms.
func credentials(req *enclavewire.Request) enclaveside.Credentials {
	var c enclaveside.Credentials
	if i := req.Initialize; i != nil {
		c.ConfidentialSpace = &enclaveside.ConfidentialSpaceCredentials{WIPProviderPath: i.WIPProviderPath, EncryptionKeyPath: i.EncryptionKeyPath}
	}
	if a := req.InitializeAWS; a != nil {
		c.AWS = &enclaveside.AWSCredentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey,
			SessionToken: a.SessionToken, EncryptionKeyID: a.EncryptionKeyID, Region: a.Region}
	}
	return c
}

// version is a request's BLS signing version; an absent one (older
// clients) is the latest.
func version(v *uint8) uint8 {
	if v == nil {
		return tezos.SignVersionLatest
	}
	return *v
}

// taggedKey and taggedSignature put the domain's keys and signatures in
// their wire form; the domain only makes the four key types the wire has.
func taggedKey(pk tezos.PublicKey) enclavewire.Tagged {
	t, _ := enclavewire.TaggedFromPublicKey(pk)
	return t
}

func taggedSignature(sig tezos.Signature) enclavewire.Tagged {
	t, _ := enclavewire.TaggedFromSignature(sig)
	return t
}
