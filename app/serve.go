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

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/domain/signer"
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
		fx.Provide(metrics.New, startServers),
		fx.Invoke(func(*Listeners) {}),
	)
}

func readiness(svc *signer.Service, v Vaults) httpapi.Readiness {
	return func(ctx context.Context) error {
		for _, vault := range v {
			if err := vault.Enclave.Ready(ctx); err != nil {
				return fmt.Errorf("vault %s: %w", vault.Name, err)
			}
		}
		return svc.Ready()
	}
}

func startServers(lc fx.Lifecycle, cfg *config.Config, svc *signer.Service, v Vaults, m *metrics.Metrics, log *slog.Logger) (*Listeners, error) {
	svc.SetObserver(m)
	api := httpapi.New(svc, httpapi.Options{Logger: log.With("component", "http"), Observer: m})
	main := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	util := &http.Server{Handler: httpapi.UtilityHandler(readiness(svc, v), m.Handler()), ReadHeaderTimeout: 10 * time.Second}
	ls := &Listeners{}
	loadCtx, stopLoading := context.WithCancel(context.Background())
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			// Keys load in the background and an unreachable enclave is
			// waited for: until they are in, /healthz says why and sign
			// requests get 503, never a misleading 404.
			svc.StartLoading(loadCtx, 2*time.Second, 2*time.Minute)
			ln, err := net.Listen("tcp", cfg.Server.Address)
			if err != nil {
				return fmt.Errorf("server.address: %w", err)
			}
			uln, err := net.Listen("tcp", cfg.Server.UtilityAddress)
			if err != nil {
				ln.Close()
				return fmt.Errorf("server.utility_address: %w", err)
			}
			ls.API, ls.Utility = ln.Addr(), uln.Addr()
			go serveHTTP(main, ln, log)
			go serveHTTP(util, uln, log)
			log.Info("signer listening", "address", ls.API.String(), "utility_address", ls.Utility.String())
			go func() {
				if svc.WaitLoaded(loadCtx) == nil {
					log.Info("signer ready", "address", ls.API.String(), "utility_address", ls.Utility.String(), "keys", svc.Count())
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			stopLoading()
			return errors.Join(main.Shutdown(ctx), util.Shutdown(ctx))
		},
	})
	return ls, nil
}

func serveHTTP(s *http.Server, ln net.Listener, log *slog.Logger) {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("HTTP server stopped", "address", ln.Addr().String(), "error", err)
	}
}
