// Package gcpretry is the retry discipline Sigil's Google Cloud adapters
// (Firestore key storage and watermarks) share: which gRPC errors are
// transient, retried with the loop of package retry (capped exponential
// backoff and jitter, bounded by attempts and by the caller's context).
package gcpretry

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigil-signer/sigil/adapters/internal/retry"
)

// Policy bounds the retries.
type Policy = retry.Policy

// Transient reports whether err is worth retrying: gRPC Unavailable,
// DeadlineExceeded, Aborted, ResourceExhausted or Internal, and never the
// caller's own cancellation or deadline.
func Transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal:
		return true
	}
	return false
}

// Do is retry.Do with Transient as the classifier.
func Do(ctx context.Context, p Policy, onRetry func(attempt int, wait time.Duration, err error), f func(context.Context) error) error {
	return retry.Do(ctx, p, Transient, onRetry, f)
}
