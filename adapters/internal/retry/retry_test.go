package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sigil-signer/sigil/adapters/internal/retry"
)

var (
	errBusy = errors.New("busy")
	errBad  = errors.New("bad")
)

func transient(err error) bool { return errors.Is(err, errBusy) }

func TestDo(t *testing.T) {
	p := retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Attempts: 4}
	var waits []time.Duration
	calls := 0
	err := retry.Do(context.Background(), p, transient, func(_ int, w time.Duration, _ error) { waits = append(waits, w) }, func(context.Context) error {
		calls++
		return errBusy
	})
	assert.ErrorIs(t, err, errBusy)
	assert.Equal(t, 4, calls, "attempts are bounded")
	assert.Len(t, waits, 3)
	for i, w := range waits {
		// backoff 1ms, 2ms, 2ms (capped); each wait in [b/2, b]
		b := min(time.Millisecond<<i, 2*time.Millisecond)
		assert.GreaterOrEqual(t, w, b/2, "wait %d", i)
		assert.LessOrEqual(t, w, b, "wait %d", i)
	}

	calls = 0
	err = retry.Do(context.Background(), p, transient, nil, func(context.Context) error {
		calls++
		if calls < 3 {
			return errBusy
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 3, calls)

	calls = 0
	err = retry.Do(context.Background(), p, transient, nil, func(context.Context) error { calls++; return errBad })
	assert.ErrorIs(t, err, errBad)
	assert.Equal(t, 1, calls, "errors the classifier rejects are not retried")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	err = retry.Do(ctx, p, transient, nil, func(context.Context) error { calls++; return nil })
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, calls, "nothing runs under an ended context")
}

// TestDeadline: a retry that could not finish before the caller's deadline
// is not attempted; the last error is returned at once.
func TestDeadline(t *testing.T) {
	p := retry.Policy{Initial: time.Hour, Max: time.Hour, Attempts: 5}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	calls := 0
	err := retry.Do(ctx, p, transient, nil, func(context.Context) error { calls++; return errBusy })
	assert.ErrorIs(t, err, errBusy)
	assert.Equal(t, 1, calls)
}
