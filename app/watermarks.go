package app

import (
	"context"
	"fmt"
	"io"
	"strings"

	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/config"
	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	wmfirestore "github.com/sigil-signer/sigil/adapters/watermark/firestore"
	wmmem "github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/ports"
)

// watermarkOpener opens a watermark backend from its raw config section.
type watermarkOpener func(ctx context.Context, decode func(any) error, baseDir string) (ports.WatermarkStore, error)

// watermarkDrivers maps a `watermark.driver` name to its backend.
var watermarkDrivers = map[string]watermarkOpener{
	"file": openFileWatermarks,
	"mem": func(context.Context, func(any) error, string) (ports.WatermarkStore, error) {
		return wmmem.New(wmmem.Config{}), nil
	},
	"gcp":       openFirestoreWatermarks,
	"firestore": openFirestoreWatermarks,
}

func openFileWatermarks(_ context.Context, decode func(any) error, baseDir string) (ports.WatermarkStore, error) {
	cfg := wmfile.Config{BaseDir: baseDir}
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return nil, err
		}
	}
	return wmfile.Open(cfg)
}

func openFirestoreWatermarks(ctx context.Context, decode func(any) error, _ string) (ports.WatermarkStore, error) {
	var cfg wmfirestore.Config
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return nil, err
		}
	}
	return wmfirestore.New(ctx, cfg)
}

// Watermarks provides the configured high-watermark store (file under
// base_dir by default). Only verbs that sign or move watermarks include it:
// the file backend holds an exclusive lock while open.
func Watermarks() fx.Option {
	return fx.Provide(openWatermarks)
}

func openWatermarks(lc fx.Lifecycle, cfg *config.Config) (ports.WatermarkStore, error) {
	driver, decode := "file", (func(any) error)(nil)
	if cfg.Watermark != nil {
		driver, decode = cfg.Watermark.Driver, cfg.Watermark.Decoder()
	}
	open, ok := watermarkDrivers[driver]
	if !ok {
		return nil, fmt.Errorf("watermark.driver: unknown driver %q (known: %s)", driver, strings.Join(keys(watermarkDrivers), ", "))
	}
	st, err := open(context.Background(), decode, cfg.BaseDir)
	if err != nil {
		return nil, fmt.Errorf("watermark (%s): %w", driver, err)
	}
	if c, ok := st.(io.Closer); ok {
		lc.Append(fx.StopHook(c.Close))
	}
	return st, nil
}
