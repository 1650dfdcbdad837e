package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

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
	LC     fx.Lifecycle
	Config *config.Config
	Log    *slog.Logger
	IO     ports.WatermarkIOObserver `optional:"true"`
}

func openWatermarks(p WatermarkParams) (ports.WatermarkStore, error) {
	lc, cfg, log := p.LC, p.Config, p.Log
	driver, decode := "file", (func(any) error)(nil)
	if cfg.Watermark != nil {
		driver, decode = cfg.Watermark.Driver, cfg.Watermark.Decoder()
	}
	open, ok := watermarkDrivers[driver]
	if !ok {
		return nil, fmt.Errorf("watermark.driver: unknown driver %q (known: %s)", driver, strings.Join(keys(watermarkDrivers), ", "))
	}
	st, err := open(context.Background(), decode, watermark.Env{BaseDir: cfg.BaseDir, Logger: log.With("watermark", driver), IO: p.IO})
	if err != nil {
		return nil, fmt.Errorf("watermark (%s): %w", driver, err)
	}
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
