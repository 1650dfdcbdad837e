// Package watermark holds the contract Sigil's high-watermark backends share
// with the application: each backend package (file, mem, firestore, dynamodb) exports
// a Driver of type Opener and a Check of type Checker (validation of its
// section without opening anything), so a new backend is one package plus
// its line in the application's driver tables. A backend reports every I/O it makes
// (read, write, create) through Env.IO, which feeds Signatory's
// watermark_io_* metrics. Shared is the per-key bookkeeping (lock, marks
// seen, state as last read or written) of the backends several daemons share
// through conditional writes. watermarktest holds their contract suite.
package watermark

import (
	"context"
	"log/slog"
	"time"

	"github.com/sigil-signer/sigil/ports"
)

// Env is what the application tells a watermark backend about its
// surroundings.
type Env struct {
	// BaseDir is the configured base directory (base_dir).
	BaseDir string
	// Logger receives the backend's diagnostics; nil discards.
	Logger *slog.Logger
	// IO observes the backend's I/O; nil observes nothing.
	IO ports.WatermarkIOObserver
	// NoCreate, when set, is why the backend must not create its storage
	// (a DynamoDB table) when it is missing: marks existed (the watermark
	// witness holds some), or the command only reads. A backend whose
	// storage is missing then fails with this reason instead of starting
	// empty.
	NoCreate string
}

// Opener opens a watermark backend. decode decodes the backend's raw
// `config` section (nil when absent). A store holding resources also
// implements io.Closer.
type Opener func(ctx context.Context, decode func(any) error, env Env) (ports.WatermarkStore, error)

// Checker validates a backend's raw `config` section as its Opener would,
// without opening anything (no directory created, no client, no network):
// the application checks the whole configuration before it opens any
// store or vault.
type Checker func(decode func(any) error, env Env) error

// IORecorder reports one backend's I/O to an observer. Its zero value (or
// one with a nil observer) records nothing.
type IORecorder struct {
	Observer ports.WatermarkIOObserver
	Backend  string // "file", "gcp", "aws", "mem"
	Table    string // table or collection name; "" for files
}

// Recorder returns an IORecorder for backend and table over env.IO.
func (e Env) Recorder(backend, table string) IORecorder {
	return IORecorder{Observer: e.IO, Backend: backend, Table: table}
}

// Observe reports one operation ("read", "write", "create") that started at
// start and ended with err. errType classifies a failure for
// watermark_io_errors_total (e.g. "conflict", "unavailable", "io"); it is
// ignored when err is nil.
func (r IORecorder) Observe(op string, start time.Time, err error, errType string) {
	if r.Observer == nil {
		return
	}
	r.Observer.ObserveWatermarkIO(ports.WatermarkIOEvent{
		Backend: r.Backend, Operation: op, Table: r.Table,
		Duration: time.Since(start), Err: err, ErrorType: errType,
	})
}
