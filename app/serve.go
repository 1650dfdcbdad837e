package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.uber.org/fx"
	"golang.org/x/net/netutil"

	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/adapters/netlimit"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/ports"
)

// Listeners are the bound addresses of the running daemon.
type Listeners struct {
	API     net.Addr
	Utility net.Addr
}

// Serve runs the daemon: at start it loads every stored key into its
// enclave, then serves the signer API and the utility endpoints.
func Serve() fx.Option {
	return fx.Options(
		Watermarks(),
		Witnessed(),
		fx.Provide(newMetrics, startServers, newPolicyHook, newStartTasks, newAPISwitch, newReloader,
			func(m *metrics.Metrics) ports.WatermarkIOObserver { return m }),
		fx.Invoke(func(*Listeners) {}),
	)
}

func readiness(svc *signer.Service, v Vaults, wm ports.WatermarkStore, more ...httpapi.Readiness) httpapi.Readiness {
	return func(ctx context.Context) error {
		for _, vault := range v {
			if err := vault.Enclave.Ready(ctx); err != nil {
				return fmt.Errorf("vault %s: %w", vault.Name, err)
			}
		}
		if err := svc.Ready(); err != nil {
			return err
		}
		// A signer whose watermark store cannot commit refuses every
		// consensus request: it is not ready.
		if hc, ok := wm.(ports.HealthChecker); ok {
			if err := hc.Healthy(ctx); err != nil {
				return fmt.Errorf("watermark store cannot record marks: %w", err)
			}
		}
		for _, check := range more {
			if err := check(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// newHTTPServer returns a server with the timeouts both listeners share
// (server.*_timeout): a slow or idle client holds a connection for a
// bounded time.
func newHTTPServer(h http.Handler, s config.Server, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// maxHeaderBytes bounds a request's line and headers (a sign request's URL
// is under 200 bytes).
const maxHeaderBytes = 64 << 10

// listen binds addr with at most max open connections, and at most
// perClient from one client address (the others are closed at once, so a
// single host cannot fill the listener).
func listen(field, addr string, max, perClient int, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return netutil.LimitListener(netlimit.Wrap(ln, perClient, field, log), max), nil
}

func newMetrics(cfg *config.Config) *metrics.Metrics {
	backend := "file"
	if cfg.Watermark != nil {
		backend = cfg.Watermark.Driver
	}
	if backend == "firestore" {
		// Sigil's other name of Signatory's "gcp" backend: one label value
		// for one backend, as its I/O metrics report it.
		backend = "gcp"
	}
	return metrics.New(metrics.Options{WatermarkBackend: backend, Build: buildinfo.Read()})
}

// ServeParams are startServers' dependencies.
type ServeParams struct {
	fx.In
	LC         fx.Lifecycle
	Config     *config.Config
	Signer     *signer.Service
	Vaults     Vaults
	Metrics    *metrics.Metrics
	Log        *slog.Logger
	Watermarks ports.WatermarkStore
	Tasks      *StartTasks
	API        *apiSwitch
	Reloader   *Reloader
}

func startServers(p ServeParams) (*Listeners, error) {
	cfg, svc, m, log := p.Config, p.Signer, p.Metrics, p.Log
	svc.SetObserver(m)
	m.SetKeys(svc.Has)
	m.SetConsensusKeys(svc.ConsensusKeys)
	for _, v := range p.Vaults {
		// Pooled enclave clients export their health and request latency.
		if pool, ok := v.Enclave.(ports.EnclavePool); ok {
			pool.SetRPCObserver(m.AddEnclavePool(v.Name, pool.PoolStats))
		}
	}
	// The signer API is served by the handler of the current snapshot
	// (apiSwitch); POST /reload joins the utility endpoints.
	main := newHTTPServer(p.API, cfg.Server, log)
	umux := http.NewServeMux()
	umux.Handle("/reload", reloadHandler(p.Reloader, p.API, log))
	umux.Handle("/", httpapi.UtilityHandler(readiness(svc, p.Vaults, p.Watermarks, moreReadiness(p)...), m.Handler()))
	util := newHTTPServer(umux, cfg.Server, log)
	ls := &Listeners{}
	loadCtx, stopLoading := context.WithCancel(context.Background())
	p.LC.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			// Keys load in the background and an unreachable enclave is
			// waited for: until they are in, /healthz says why and sign
			// requests get 503, never a misleading 404.
			svc.StartLoading(loadCtx, 2*time.Second, 2*time.Minute)
			ln, err := listen("server.address", cfg.Server.Address, cfg.Server.MaxConnections, cfg.Server.MaxConnectionsPerClient, log)
			if err != nil {
				return err
			}
			uln, err := listen("server.utility_address", cfg.Server.UtilityAddress, cfg.Server.MaxConnections, cfg.Server.MaxConnectionsPerClient, log)
			if err != nil {
				ln.Close()
				return err
			}
			ls.API, ls.Utility = ln.Addr(), uln.Addr()
			go serveHTTP(main, ln, log)
			go serveHTTP(util, uln, log)
			log.Info("signer listening", "address", ls.API.String(), "utility_address", ls.Utility.String())
			go func() {
				if svc.WaitLoaded(loadCtx) == nil && p.Tasks.Wait(loadCtx) {
					logReady(log, cfg, svc, p.Watermarks, ls)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			stopLoading()
			log.Info("stopping: no new connections, draining in-flight requests")
			err := errors.Join(main.Shutdown(ctx), util.Shutdown(ctx))
			if err != nil {
				log.Error("HTTP servers did not drain in time", "error", err.Error())
			} else {
				log.Info("HTTP servers stopped: every in-flight request answered")
			}
			return err
		},
	})
	return ls, nil
}

func serveHTTP(s *http.Server, ln net.Listener, log *slog.Logger) {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("HTTP server stopped", "address", ln.Addr().String(), "error", err)
	}
}
