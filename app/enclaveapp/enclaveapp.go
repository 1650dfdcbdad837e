// Package enclaveapp wires Sigil's enclave (cmd/sigil-enclave) with
// go.uber.org/fx, as package app wires the daemon: the KMS adapter the
// command line names (kmsDrivers, the only place that names them), the
// enclave's rules (domain/enclave) and its server (adapters/enclaveserver),
// and the listeners. It imports nothing of the daemon's, so that the
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

	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/kms/kmsdelay"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/adapters/logging"
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
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Stdout receives "listening on ADDR" once the listener is bound;
	// Stderr the logs.
	Stdout, Stderr io.Writer
}

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
	close  []func() error
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
	e.Domain, err = enclave.New(enclave.Config{
		Platform: o.Platform,
		KMS:      kmsdelay.Wrap(kms, o.KMSDelay),
		Keys:     enclavewire.KeyCodec{},
		Guard:    g,
	})
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

// Serve serves the enclave protocol on l until Close.
func (e *Enclave) Serve(l net.Listener) error { return e.Server.Serve(l) }

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
		log.LogAttrs(context.Background(), slog.LevelInfo, "enclave stopped", e.Server.Stats().LogAttrs()...)
		return err
	}))
	return e, nil
}

// listen binds the listener when the application starts, says so on
// stdout ("listening on ADDR", which scripts and tests wait for) and in the
// log, and serves; a listener that fails while the enclave runs shuts the
// application down with its error.
func listen(lc fx.Lifecycle, sd fx.Shutdowner, o Options, e *Enclave, log *slog.Logger) {
	lc.Append(fx.StartHook(func() error {
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", o.Listen, err)
		}
		if o.Stdout != nil {
			fmt.Fprintf(o.Stdout, "listening on %s\n", l.Addr())
		}
		so := e.Server.Options()
		log.LogAttrs(context.Background(), slog.LevelInfo, "enclave started",
			slog.String("addr", l.Addr().String()), slog.String("kms", o.KMS), slog.String("mode", string(e.Domain.Platform())),
			slog.String("reply_delay", o.ReplyDelay.String()), slog.String("kms_delay", o.KMSDelay.String()), slog.Int("max_conns", so.MaxConns),
			slog.String("handshake_timeout", so.HandshakeTimeout.String()), slog.String("frame_timeout", so.FrameTimeout.String()),
			slog.String("write_timeout", so.WriteTimeout.String()), slog.String("idle_timeout", so.IdleTimeout.String()))
		go func() {
			if err := e.Serve(l); !errors.Is(err, enclaveserver.ErrServerClosed) {
				log.Error("the enclave's listener failed", "addr", l.Addr().String(), "error", err.Error())
				_ = sd.Shutdown(fx.ExitCode(1))
			}
		}()
		return nil
	}))
}
