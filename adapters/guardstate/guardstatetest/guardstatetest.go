// Package guardstatetest lets the daemon's watermark store contract
// (adapters/watermark/watermarktest: concurrency, replay, another writer's
// marks) run against the enclave guard's state adapters, which implement
// only the part of ports.WatermarkStore the guard needs.
package guardstatetest

import (
	"context"
	"errors"

	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// Store is a ports.GuardState seen as a ports.WatermarkStore whose Export
// and Import fail (the guard's state is never exported nor imported by the
// daemon).
type Store struct{ ports.GuardState }

var _ ports.WatermarkStore = Store{}

var errUnsupported = errors.New("guard state: no export or import")

// Export fails.
func (Store) Export(context.Context) ([]watermark.Record, error) { return nil, errUnsupported }

// Import fails.
func (Store) Import(context.Context, []watermark.Record) error { return errUnsupported }
