package ports

import (
	"context"

	"github.com/sigil-signer/sigil/domain/watermark"
)

// GuardState is where the enclave's guard (domain/guard) keeps its high
// watermarks: the part of WatermarkStore the guard needs, with the same
// contract, so that every watermark store can serve it (in production the
// Firestore store, opened with the enclave's own attested credentials on a
// database only the attested workload may write). Check answers from what
// this process knows, never authoritatively; Commit decides again,
// atomically, against the recorded mark, and makes the mark durable before
// it returns (see WatermarkStore).
type GuardState interface {
	Check(ctx context.Context, k watermark.Key) (m watermark.Mark, ok bool, err error)
	Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error)
}

var _ GuardState = WatermarkStore(nil)
