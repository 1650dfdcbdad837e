package ports

import (
	"context"

	"github.com/sigil-signer/sigil/domain/watermark"
)

// WatermarkWitness is the daemon's second record of its watermarks: the
// highest mark it ever committed per chain, key and kind, kept locally
// under the state directory and apart from the WatermarkStore's own files,
// so that losing or replacing either leaves the other. At start the
// signer compares the backend with it (domain/watermark.Lags): a backend
// behind the witness has lost marks. It holds no signature, only positions
// and digests.
type WatermarkWitness interface {
	// Records returns every witnessed mark.
	Records() []watermark.Record
	// Mark returns the witnessed mark of k, if any.
	Mark(k watermark.Key) (watermark.Mark, bool)
	// Witness raises the witnessed marks to recs (a lower or equal record
	// changes nothing). When it returns nil they are durable (on disk,
	// synced); concurrent calls share one write.
	Witness(ctx context.Context, recs ...watermark.Record) error
	// Forget drops the witnessed marks of keys (a reset the operator
	// accepted), durably.
	Forget(keys []watermark.Key) error
	// Fresh reports whether the record did not exist before it was opened
	// (a first start, or a new state directory).
	Fresh() bool
	// Location names the record (its file).
	Location() string
}
