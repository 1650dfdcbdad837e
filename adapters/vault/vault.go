// Package vault defines the contract between Sigil's wiring and its vault
// drivers: a driver turns its raw configuration section into an enclave and
// the storage of that enclave's sealed keys. Adding an enclave backend means
// writing one package with an Opener and registering it with one line in the
// app package.
package vault

import (
	"context"
	"log/slog"

	"github.com/sigil-signer/sigil/ports"
)

// StorageOpener opens the key storage named by driver with its raw config
// section (decode is nil when the section is absent).
type StorageOpener func(ctx context.Context, driver string, decode func(any) error) (ports.KeyStore, error)

// Env is what a vault driver may use besides its own configuration.
type Env struct {
	BaseDir     string
	Logger      *slog.Logger
	OpenStorage StorageOpener
}

// Instance is an opened vault.
type Instance struct {
	Enclave ports.Enclave
	Store   ports.KeyStore
	// Close releases connections and clients; may be nil.
	Close func() error
}

// Opener opens the vault called name from its raw config section.
type Opener func(ctx context.Context, name string, decode func(any) error, env Env) (Instance, error)
