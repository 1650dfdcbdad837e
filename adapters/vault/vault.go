// Package vault defines the contract between Sigil's wiring and its vault
// drivers: a driver turns its raw configuration section into an enclave and
// the storage of that enclave's sealed keys. Adding an enclave backend means
// writing one package with an Opener (and the Checker that validates its
// section without opening it) and registering them in the app package.
package vault

import (
	"context"
	"log/slog"

	"github.com/sigil-signer/sigil/ports"
)

// StorageOpener opens the key storage named by driver with its raw config
// section (decode is nil when the section is absent).
type StorageOpener func(ctx context.Context, driver string, decode func(any) error) (ports.KeyStore, error)

// StorageChecker validates the key storage section named by driver without
// opening the storage (decode is nil when the section is absent).
type StorageChecker func(driver string, decode func(any) error) error

// Env is what a vault driver may use besides its own configuration.
type Env struct {
	BaseDir     string
	Logger      *slog.Logger
	OpenStorage StorageOpener
	// CheckStorage is set when the driver's Checker runs.
	CheckStorage StorageChecker
	// Daemon says the vault serves a long-running daemon: what happens in
	// the background (an enclave that becomes unreachable, and why; its
	// recovery) is logged, once per change. A one-shot command gets it as
	// the error of its request instead.
	Daemon bool
}

// Instance is an opened vault.
type Instance struct {
	Enclave ports.Enclave
	Store   ports.KeyStore
	// Display is the driver's display name, as Signatory's vault of the
	// same driver names itself (its Vault.Name(): File, Mem,
	// ConfidentialSpace, NitroEnclave): the `vault` label of Signatory's
	// metrics. A driver Signatory lacks picks a name in the same style.
	Display string
	// Close releases connections and clients; may be nil.
	Close func() error
}

// Opener opens the vault called name from its raw config section.
type Opener func(ctx context.Context, name string, decode func(any) error, env Env) (Instance, error)

// Checker validates the vault called name from its raw config section, its
// key storage section included (through env.CheckStorage), without opening
// anything: no file is created, nothing is dialled. The application runs the
// Checker of every configured vault before it opens any of them, so that a
// configuration error is reported before an enclave is contacted.
type Checker func(name string, decode func(any) error, env Env) error
