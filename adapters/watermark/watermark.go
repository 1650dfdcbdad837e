// Package watermark holds the contract Sigil's high-watermark backends share
// with the application: each backend package (file, mem, firestore) exports
// a Driver of type Opener, so a new backend is one package plus one line in
// the application's driver table. watermarktest holds their contract suite.
package watermark

import (
	"context"

	"github.com/sigil-signer/sigil/ports"
)

// Opener opens a watermark backend. decode decodes the backend's raw
// `config` section (nil when absent); baseDir is the configured base
// directory. A store holding resources also implements io.Closer.
type Opener func(ctx context.Context, decode func(any) error, baseDir string) (ports.WatermarkStore, error)
