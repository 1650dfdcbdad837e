// Package gcpretry is the retry discipline Sigil's Google Cloud adapters
// (Firestore key storage and watermarks) share: which gRPC errors are
// transient, and a loop that retries them with capped exponential backoff
// and jitter, bounded by attempts and by the caller's context.
package gcpretry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Policy bounds the retries.
type Policy struct {
	Initial, Max time.Duration // first and largest backoff
	Attempts     int           // total attempts, the first included
}

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

// Do runs f until it succeeds, fails with a non-transient error, the
// attempts run out, ctx ends, or ctx's deadline would pass before the next
// attempt. onRetry, if non-nil, is told about each retry. It returns f's last
// error.
func Do(ctx context.Context, p Policy, onRetry func(attempt int, wait time.Duration, err error), f func(context.Context) error) error {
	backoff := p.Initial
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := f(ctx)
		if err == nil || !Transient(err) || ctx.Err() != nil || attempt >= p.Attempts {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // the retry could not finish in time anyway
		}
		if onRetry != nil {
			onRetry(attempt, wait, err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		backoff = min(backoff*2, p.Max)
	}
}
