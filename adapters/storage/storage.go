// Package storage holds what every key storage driver shares: the Opener
// signature each driver package exports as its Open function, the Checker it
// exports as Check (validation of its section without opening anything), and
// the Env a driver receives from the application. A new storage driver is one
// new package under adapters/storage exporting an Open of type Opener and a
// Check of type Checker, plus its line in the application's driver tables; the drivers themselves live in the
// sub-packages (file, firestore, dynamodb) and storagetest holds their shared contract
// test.
package storage

import (
	"context"
	"log/slog"

	"github.com/sigil-signer/sigil/ports"
)

// Env is what the application tells a storage driver about its surroundings.
type Env struct {
	// BaseDir is the configured base directory (base_dir), used for
	// default file locations. It may be empty.
	BaseDir string
	// Logger receives the driver's diagnostics. It may be nil, in which
	// case the driver logs nothing.
	Logger *slog.Logger
}

// Opener opens a key store. decode decodes the driver's raw `config`
// section into the value it points to (it is nil when the section is
// absent). If the returned store holds resources it also implements
// io.Closer, and the caller closes it when done.
type Opener func(ctx context.Context, decode func(any) error, env Env) (ports.KeyStore, error)

// Checker validates a driver's raw `config` section as its Opener would,
// without opening anything (no file created, no client, no network): the
// application checks every section of the configuration before it opens
// any storage or vault.
type Checker func(decode func(any) error, env Env) error

// LoggerOf returns env.Logger, or a logger that discards everything when it
// is nil.
func LoggerOf(env Env) *slog.Logger {
	if env.Logger != nil {
		return env.Logger
	}
	return slog.New(slog.DiscardHandler)
}
