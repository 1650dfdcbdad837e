// Package enclaveapp wires Sigil's enclave (cmd/sigil-enclave) with
// go.uber.org/fx, as package app wires the daemon: the KMS adapter the
// command line names (kmsDrivers, the only place that names them), the
// attested channel when asked for (adapters/securechannel: the ephemeral
// key, the launcher's token, the pinned clients), the enclave's rules
// (domain/enclave) and its server (adapters/enclaveserver), and the
// listeners. It imports nothing of the daemon's, so that the
// enclave's binary holds no daemon adapter (cmd/sigil-enclave's test
// checks its dependencies). `sigil serve --dev` builds its in-process
// enclave with Open.
package enclaveapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"go.uber.org/fx"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/kms/kmsdelay"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// Options are the enclave's settings (sigil-enclave's command line).
type Options struct {
	// Listen is the TCP address of the enclave protocol.
	Listen string
	// KMS names the KMS adapter (kmsDrivers): gcp, local or passthrough.
	KMS string
	// KMSKeyFile is the local stand-in's key file.
	KMSKeyFile string
	// GCP configures the Cloud KMS adapter (its seams; production keeps
	// the zero value).
	GCP gcpkms.Config
	// Platform whose Initialize the enclave accepts.
	Platform enclave.Platform
	// ReplyDelay and KMSDelay slow the enclave down (load tests).
	ReplyDelay, KMSDelay time.Duration
	// The connection guard's settings (enclaveserver.Options).
	MaxConns                                                  int
	HandshakeTimeout, FrameTimeout, WriteTimeout, IdleTimeout time.Duration
	// Guard configures the enclave's guard (guard.go); off by default.
	Guard GuardOptions
	// Attested serves the attested channel on Listen (TLS 1.3, the
	// launcher's attestation token in the enclave's certificate, clients
	// admitted by the pin of their key): see Attest.
	Attested bool
	// Attest configures the attested channel (LauncherSocket, Audience,
	// TokenType, ClientPins from SIGIL_ENCLAVE_CLIENT_PINS).
	Attest securechannel.ServerSettings
	// AttestStartTimeout bounds the wait for the first attestation token
	// at start (default DefaultAttestStartTimeout): without one the start
	// fails, naming the launcher's last error.
	AttestStartTimeout time.Duration
	// StartContext, if set, ends the wait for the first attestation token
	// early when it is done (a SIGTERM during the start).
	StartContext context.Context
	// PlainListen, with Attested, is a TCP address where the plain
	// protocol is also served (migration only; empty: none). There the
	// enclave refuses ImportUnencrypted and AttestationToken.
	PlainListen string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Stdout receives "listening on ADDR" once the listener is bound;
	// Stderr the logs.
	Stdout, Stderr io.Writer
}

// DefaultAttestStartTimeout is the default bound on the wait for the first
// attestation token.
const DefaultAttestStartTimeout = time.Minute

// kmsOpener opens a KMS adapter; close releases it (nil: nothing to).
type kmsOpener func(o Options, log *slog.Logger) (kms enclaveside.KMSProvider, close func() error, err error)

// kmsDrivers maps --kms to its adapter: a new KMS is one package and one
// line here.
var kmsDrivers = map[string]kmsOpener{
	"gcp":         openGCP,
	"local":       openLocal,
	"passthrough": openPassthrough,
}

func openGCP(o Options, log *slog.Logger) (enclaveside.KMSProvider, func() error, error) {
	if o.Platform == enclave.PlatformNitro {
		return nil, nil, errors.New("--kms gcp seals with Cloud KMS and needs the Confidential Space Initialize: it cannot run with --mode nitro")
	}
	cfg := o.GCP
	cfg.Logger = log.With("component", "gcpkms")
	p, err := gcpkms.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return p, p.Close, nil
}

func openLocal(o Options, _ *slog.Logger) (enclaveside.KMSProvider, func() error, error) {
	k, err := localstandin.New(o.KMSKeyFile)
	return k, nil, err
}

func openPassthrough(_ Options, log *slog.Logger) (enclaveside.KMSProvider, func() error, error) {
	log.Warn("passthrough KMS: sealed blobs hold plain private keys; never use real keys")
	return passthroughstandin.KMS{}, nil, nil
}

// KMSNames lists the names --kms accepts.
func KMSNames() []string { return []string{"gcp", "local", "passthrough"} }

// Enclave is a built enclave: its rules, its server, and what they hold.
type Enclave struct {
	Domain *enclave.Enclave
	Server *enclaveserver.Server
	// Channel is the attested channel's server (nil without Attested).
	Channel *securechannel.Server
	close   []func() error
	guard   *guardCounts // nil without a guard
}

// StatsAttrs are the enclave's counters for its stats line: the server's
// (connections, timeouts, requests by method) and, with a guard, the
// guard's refusals by kind.
func (e *Enclave) StatsAttrs() []slog.Attr {
	attrs := e.Server.Stats().LogAttrs()
	if e.guard != nil {
		attrs = append(attrs, e.guard.attrs()...)
	}
	return attrs
}

// Open builds the enclave o describes: the KMS adapter, the enclave's rules
// and its server. Nothing listens yet (Serve).
func Open(o Options, log *slog.Logger) (_ *Enclave, err error) {
	e := &Enclave{}
	defer func() {
		if err != nil {
			_ = e.Close()
		}
	}()
	switch o.Platform {
	case "", enclave.PlatformConfidentialSpace, enclave.PlatformNitro:
	default:
		return nil, fmt.Errorf("invalid --mode %q (want confidentialspace or nitro)", o.Platform)
	}
	open, ok := kmsDrivers[o.KMS]
	if !ok {
		return nil, fmt.Errorf("invalid --kms %q (want gcp, local or passthrough)", o.KMS)
	}
	if o.PlainListen != "" && !o.Attested {
		return nil, errors.New("--plain-listen is a second, plain listener of an enclave serving the attested channel: it needs --attested (without it, --listen is plain)")
	}
	kms, closeKMS, err := open(o, log)
	if err != nil {
		return nil, err
	}
	if closeKMS != nil {
		e.close = append(e.close, closeKMS)
	}
	g, closeGuard, err := openGuard(o, log)
	if err != nil {
		return nil, err
	}
	if closeGuard != nil {
		e.close = append(e.close, closeGuard)
	}
	if lg, ok := g.(loggedGuard); ok {
		e.guard = lg.n
	}
	cfg := enclave.Config{
		Platform: o.Platform,
		KMS:      kmsdelay.Wrap(kms, o.KMSDelay),
		Keys:     enclavewire.KeyCodec{},
		Guard:    g,
	}
	if o.Attested {
		if e.Channel, err = openChannel(o, log); err != nil {
			return nil, err
		}
		e.close = append(e.close, func() error { e.Channel.Close(); return nil })
		// The domain answers AttestationToken with the channel's token and
		// refuses ImportUnencrypted on any plain connection.
		cfg.Tokens = e.Channel
	} else if o.Attest.ClientPins != "" {
		log.Warn("the launch environment lists client pins but --attested is not set: the enclave serves the plain protocol, which authenticates no client",
			"env", attestation.DefaultClientPinsEnv)
	}
	e.Domain, err = enclave.New(cfg)
	if err != nil {
		return nil, err
	}
	e.Server, err = enclaveserver.New(enclaveserver.Options{
		Enclave: e.Domain, ReplyDelay: o.ReplyDelay, Logger: log,
		MaxConns: o.MaxConns, HandshakeTimeout: o.HandshakeTimeout, FrameTimeout: o.FrameTimeout,
		WriteTimeout: o.WriteTimeout, IdleTimeout: o.IdleTimeout,
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// openChannel starts the attested channel: the ephemeral key and its first
// token from the launcher, within AttestStartTimeout.
func openChannel(o Options, log *slog.Logger) (*securechannel.Server, error) {
	bound := o.AttestStartTimeout
	if bound <= 0 {
		bound = DefaultAttestStartTimeout
	}
	parent := o.StartContext
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, bound)
	defer cancel()
	socket := o.Attest.LauncherSocket
	if socket == "" {
		socket = adattest.DefaultLauncherSocket
	}
	srv, err := securechannel.OpenServer(ctx, o.Attest, log.With("component", "attestation"))
	if err != nil {
		if parent.Err() != nil {
			return nil, fmt.Errorf("--attested: stopped while waiting for the first attestation token from the launcher at %s: %w", socket, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("--attested: no attestation token from the launcher at %s within %v (--attest-start-timeout): %w", socket, bound, err)
		}
		return nil, fmt.Errorf("--attested: %w", err)
	}
	return srv, nil
}

// Serve serves the enclave protocol on l until Close: the attested
// channel when the enclave is attested.
func (e *Enclave) Serve(l net.Listener) error {
	if e.Channel != nil {
		return e.Server.ServeAttested(l, e.Channel)
	}
	return e.Server.Serve(l)
}

// ServePlain serves the plain protocol on l until Close, whatever the
// enclave's channel (the migration listener of an attested enclave).
func (e *Enclave) ServePlain(l net.Listener) error { return e.Server.Serve(l) }

// Close closes the server (every listener and connection), then what the
// enclave holds (the KMS).
func (e *Enclave) Close() error {
	var errs []error
	if e.Server != nil {
		errs = append(errs, e.Server.Close())
	}
	for i := len(e.close) - 1; i >= 0; i-- {
		errs = append(errs, e.close[i]())
	}
	e.close = nil
	return errors.Join(errs...)
}

// Module is the enclave application: its logger, the enclave Open builds,
// and its listener, started and stopped with the fx application.
func Module(o Options) fx.Option {
	return fx.Options(
		fx.Supply(o),
		fx.Provide(newLogger, openEnclave),
		fx.Invoke(listen),
	)
}

// ParseLevel parses a log level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q (want debug, info, warn or error)", s)
	}
	return level, nil
}

func newLogger(o Options) (*slog.Logger, error) {
	level, err := ParseLevel(o.LogLevel)
	if err != nil {
		return nil, err
	}
	w := o.Stderr
	if w == nil {
		w = io.Discard
	}
	return slog.New(logging.New(w, false, level)), nil
}

func openEnclave(lc fx.Lifecycle, o Options, log *slog.Logger) (*Enclave, error) {
	e, err := Open(o, log)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(func() error {
		err := e.Close()
		log.LogAttrs(context.Background(), slog.LevelInfo, "enclave stopped", e.StatsAttrs()...)
		return err
	}))
	return e, nil
}

// listen binds the listeners when the application starts, says so on
// stdout ("listening on ADDR" for --listen, which scripts and tests wait
// for, then "plain listening on ADDR" for --plain-listen) and in the log,
// and serves; a listener that fails while the enclave runs shuts the
// application down with its error.
func listen(lc fx.Lifecycle, sd fx.Shutdowner, o Options, e *Enclave, log *slog.Logger) {
	lc.Append(fx.StartHook(func() error {
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", o.Listen, err)
		}
		var plain net.Listener
		if o.PlainListen != "" {
			if plain, err = net.Listen("tcp", o.PlainListen); err != nil {
				l.Close()
				return fmt.Errorf("--plain-listen %s: %w", o.PlainListen, err)
			}
		}
		if o.Stdout != nil {
			fmt.Fprintf(o.Stdout, "listening on %s\n", l.Addr())
			if plain != nil {
				fmt.Fprintf(o.Stdout, "plain listening on %s\n", plain.Addr())
			}
		}
		so := e.Server.Options()
		attrs := []slog.Attr{
			slog.String("addr", l.Addr().String()), slog.String("kms", o.KMS), slog.String("mode", string(e.Domain.Platform())),
			slog.Bool("attested", e.Channel != nil),
			slog.String("reply_delay", o.ReplyDelay.String()), slog.String("kms_delay", o.KMSDelay.String()), slog.Int("max_conns", so.MaxConns),
			slog.String("handshake_timeout", so.HandshakeTimeout.String()), slog.String("frame_timeout", so.FrameTimeout.String()),
			slog.String("write_timeout", so.WriteTimeout.String()), slog.String("idle_timeout", so.IdleTimeout.String()),
		}
		if e.Channel != nil {
			pins, _ := attestation.ParsePins(o.Attest.ClientPins) // checked by OpenServer
			aud := o.Attest.Audience
			if aud == "" {
				aud = securechannel.DefaultAudience
			}
			attrs = append(attrs, slog.String("audience", aud), slog.String("client_pins", attestation.FormatPins(pins)),
				slog.String("key_nonce", e.Channel.KeyNonce()))
			if plain != nil {
				attrs = append(attrs, slog.String("plain_addr", plain.Addr().String()))
			}
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, "enclave started", attrs...)
		if plain != nil {
			log.Warn("serving the plain protocol too (--plain-listen, for migration): it authenticates no client and refuses ImportUnencrypted and AttestationToken",
				"plain_addr", plain.Addr().String())
		}
		serve := func(l net.Listener, serve func(net.Listener) error) {
			if err := serve(l); !errors.Is(err, enclaveserver.ErrServerClosed) {
				log.Error("the enclave's listener failed", "addr", l.Addr().String(), "error", err.Error())
				_ = sd.Shutdown(fx.ExitCode(1))
			}
		}
		go serve(l, e.Serve)
		if plain != nil {
			go serve(plain, e.ServePlain)
		}
		return nil
	}))
}
