package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/watermark/witness"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// Witnessed adds the watermark witness to the daemon: the record under
// <base_dir>/witness/ (opened before the backend, which it tells whether a
// missing table may be created) and the Guard that decorates the configured
// watermark store with it. The `mem` backend, which keeps nothing across a
// restart by design, has no witness.
func Witnessed() fx.Option {
	return fx.Options(
		fx.Provide(openWitness),
		fx.Decorate(guardWatermarks),
	)
}

func openWitness(lc fx.Lifecycle, cfg *config.Config, opts Options, log *slog.Logger) (ports.WatermarkWitness, error) {
	if driver, _ := watermarkDriver(cfg); driver == "mem" {
		log.Warn("watermark backend mem: marks are lost at every restart, and there is no watermark witness; for tests and development only")
		return nil, nil
	}
	for _, pkh := range opts.AcceptWatermarkReset {
		if _, err := tezos.ParsePublicKeyHash(pkh); err != nil {
			return nil, fmt.Errorf("--accept-watermark-reset: %w", err)
		}
	}
	w, err := witness.Open(cfg.BaseDir, witness.Options{Logger: log.With("component", "witness")})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(w.Close))
	return w, nil
}

// GuardParams are guardWatermarks' dependencies.
type GuardParams struct {
	fx.In
	LC      fx.Lifecycle
	Store   ports.WatermarkStore
	Witness ports.WatermarkWitness `optional:"true"`
	Config  *config.Config
	Options Options
	Log     *slog.Logger
}

func guardWatermarks(p GuardParams) (ports.WatermarkStore, error) {
	if p.Witness == nil {
		return p.Store, nil
	}
	driver, _ := watermarkDriver(p.Config)
	backend := driver
	if l, ok := p.Store.(interface{ Location() string }); ok {
		backend += " " + l.Location()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := witness.NewGuard(ctx, p.Store, p.Witness, witness.GuardOptions{
		Backend:     backend,
		AcceptReset: p.Options.AcceptWatermarkReset,
		Logger:      p.Log.With("component", "witness"),
	})
	if err != nil {
		return nil, err
	}
	p.LC.Append(fx.StopHook(g.Stop))
	return g, nil
}

// WitnessRecords reads the watermark witness of the configuration's state
// directory without locking or writing it (a daemon may be running): the
// marks it recorded, for `sigil watermarks export --witness`. The
// configuration is checked as for every verb.
func WitnessRecords(opts Options) ([]watermark.Record, error) {
	cfg, err := loadConfig(opts)
	if err != nil {
		return nil, err
	}
	recs, path, err := witness.ReadRecords(cfg.BaseDir)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		if _, statErr := os.Stat(path); statErr != nil {
			return nil, fmt.Errorf("no watermark witness at %s (the daemon creates it at its first start with this base directory)", path)
		}
	}
	return recs, nil
}
