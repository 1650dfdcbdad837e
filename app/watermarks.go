package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/watermark"
	wmdynamodb "github.com/sigil-signer/sigil/adapters/watermark/dynamodb"
	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	wmfirestore "github.com/sigil-signer/sigil/adapters/watermark/firestore"
	wmmem "github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/ports"
)

// watermarkDrivers maps a `watermark.driver` name to its backend.
var watermarkDrivers = map[string]watermark.Opener{
	"file":      wmfile.Driver,
	"mem":       wmmem.Driver,
	"gcp":       wmfirestore.Driver,
	"firestore": wmfirestore.Driver,
	"aws":       wmdynamodb.Driver,
}

// Watermarks provides the configured high-watermark store (file under
// base_dir by default). Only verbs that sign or move watermarks include it:
// the file backend holds an exclusive lock while open.
func Watermarks() fx.Option {
	return fx.Provide(openWatermarks)
}

// WatermarkParams are openWatermarks' dependencies; the I/O observer
// (metrics) is present only in the daemon.
type WatermarkParams struct {
	fx.In
	LC      fx.Lifecycle
	Config  *config.Config
	Options Options
	Log     *slog.Logger
	IO      ports.WatermarkIOObserver `optional:"true"`
	// Witness is present in the daemon (Serve): it says whether marks
	// existed, so whether a missing table may be created.
	Witness ports.WatermarkWitness `optional:"true"`
}

// watermarkDriver returns the configured backend's name and section.
func watermarkDriver(cfg *config.Config) (string, func(any) error) {
	if cfg.Watermark != nil {
		return cfg.Watermark.Driver, cfg.Watermark.Decoder()
	}
	return "file", nil
}

func openWatermarks(p WatermarkParams) (ports.WatermarkStore, error) {
	lc, cfg, log := p.LC, p.Config, p.Log
	driver, decode := watermarkDriver(cfg)
	open, ok := watermarkDrivers[driver]
	if !ok {
		return nil, unknownDriver(cfg, "watermark.driver", "driver", driver, keys(watermarkDrivers))
	}
	env := watermark.Env{BaseDir: cfg.BaseDir, Logger: log.With("watermark", driver), IO: p.IO, NoCreate: noCreate(p)}
	st, err := open(context.Background(), decode, env)
	if err != nil {
		return nil, fmt.Errorf("watermark (%s): %w", driver, err)
	}
	logStart(log, cfg, driver, st)
	if c, ok := st.(io.Closer); ok {
		lc.Append(fx.StopHook(func() error {
			if err := c.Close(); err != nil {
				log.Error("closing the watermark store", "driver", driver, "error", err.Error())
				return err
			}
			log.Info("watermark store closed", "driver", driver)
			return nil
		}))
	}
	return st, nil
}

// noCreate is why the backend must not create missing storage ("" when it
// may). The daemon creates it only when its witness holds no mark (a first
// start: Signatory creates its table too); once this state directory has
// recorded marks, a missing table is a deleted one or a typo in its name or
// region, and re-creating it empty would let a lower level sign. Commands
// without a witness create it only when they import marks.
func noCreate(p WatermarkParams) string {
	if p.Witness != nil {
		if n := len(p.Witness.Records()); n > 0 {
			return fmt.Sprintf("this daemon has recorded marks before (the watermark witness %s holds %d), so a missing table is a deleted one or a typo in its name or region, "+
				"and re-created empty it would let a lower level sign. Check the table and region; to re-create it with the marks: "+
				"`sigil watermarks export --witness -o marks.json`, then `sigil watermarks import marks.json` (import creates the table), then restart",
				p.Witness.Location(), n)
		}
		return ""
	}
	if p.Options.WatermarkCreate {
		return ""
	}
	return "this command only reads the marks (`sigil watermarks import` creates the table)"
}
