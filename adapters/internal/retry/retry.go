// Package retry is the one retry loop Sigil's cloud adapters share: capped
// exponential backoff with jitter, bounded by a number of attempts and by the
// caller's context. Which errors are worth retrying is the caller's
// classifier (gcpretry for Google Cloud's gRPC errors, awsretry for the AWS
// SDK's errors); the loop itself is the same for every backend.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy bounds the retries.
type Policy struct {
	Initial, Max time.Duration // first and largest backoff
	Attempts     int           // total attempts, the first included
}

// Do runs f until it succeeds, fails with an error transient does not
// accept, the attempts run out, ctx ends, or ctx's deadline would pass
// before the next attempt. The wait before retry n is drawn uniformly from
// [b/2, b] where b starts at p.Initial and doubles up to p.Max. onRetry, if
// non-nil, is told about each retry. Do returns f's last error (or ctx's
// error if ctx ended before the first attempt).
func Do(ctx context.Context, p Policy, transient func(error) bool, onRetry func(attempt int, wait time.Duration, err error), f func(context.Context) error) error {
	backoff := p.Initial
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := f(ctx)
		if err == nil || !transient(err) || ctx.Err() != nil || attempt >= p.Attempts {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // the retry could not finish in time anyway
		}
		if onRetry != nil {
			onRetry(attempt, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(backoff*2, p.Max)
	}
}
