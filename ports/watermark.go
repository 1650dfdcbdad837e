package ports

import (
	"context"
	"time"

	"github.com/sigil-signer/sigil/domain/watermark"
)

// WatermarkStore records high watermarks so that no key signs two different
// consensus messages at the same (level, round). The signer takes a per-key
// lock, may Check, signs, then Commits the new mark with its signature and
// answers with the signature Commit returns.
type WatermarkStore interface {
	// Check returns the mark recorded for k if this process knows it without
	// I/O (ok is false if there is none or it is unknown). It is never
	// authoritative: a store shared between daemons may hold a higher mark.
	// Because marks only rise, refusing early on what Check returns is safe,
	// and so is replaying its signature for an identical request.
	Check(ctx context.Context, k watermark.Key) (m watermark.Mark, ok bool, err error)
	// Commit atomically records m (which must carry its signature) for k if
	// m is above the recorded mark, and returns m. If the recorded mark has
	// the same level, round and digest, it keeps it and returns it, so that
	// the caller answers with the recorded signature; if that mark has no
	// signature (Signatory recorded it, or it was imported without one), it
	// records nothing and returns m: the same bytes are signed again
	// (watermark.Resign). Otherwise it returns a domain.KindConflict error
	// naming both marks. The mark is durable before Commit returns. In every
	// successful case the caller must answer with the returned mark's
	// Signature.
	Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error)
	// Export returns every recorded mark.
	Export(ctx context.Context) ([]watermark.Record, error)
	// Import records recs; it only ever raises marks (see watermark.Raise).
	Import(ctx context.Context, recs []watermark.Record) error
}

// WatermarkIOEvent is one I/O operation of a watermark backend.
type WatermarkIOEvent struct {
	Backend   string // "file", "gcp", "aws", "mem"
	Operation string // "read", "write", "create"
	Table     string // table or collection; "" for files
	Duration  time.Duration
	Err       error
	// ErrorType classifies a failure (bounded set chosen by the backend:
	// "conflict", "unavailable", "io", …); empty when Err is nil.
	ErrorType string
}

// WatermarkIOObserver receives the I/O events of watermark backends
// (metrics). Implementations must be fast and must not block.
type WatermarkIOObserver interface {
	ObserveWatermarkIO(WatermarkIOEvent)
}

// HealthChecker is implemented by a dependency (a watermark store, …) that
// can tell whether it could serve a request now; /healthz asks it. Healthy
// must be cheap and bounded by ctx.
type HealthChecker interface {
	Healthy(ctx context.Context) error
}
