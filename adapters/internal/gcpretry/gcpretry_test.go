package gcpretry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigil-signer/sigil/adapters/internal/gcpretry"
)

func TestTransient(t *testing.T) {
	for err, want := range map[error]bool{
		status.Error(codes.Unavailable, "x"):          true,
		status.Error(codes.Aborted, "x"):              true,
		status.Error(codes.Internal, "x"):             true,
		status.Error(codes.NotFound, "x"):             false,
		status.Error(codes.PermissionDenied, "x"):     false,
		context.Canceled:                              false,
		fmt.Errorf("w: %w", context.DeadlineExceeded): false,
		errors.New("plain"):                           false,
	} {
		assert.Equal(t, want, gcpretry.Transient(err), err.Error())
	}
}

func TestDo(t *testing.T) {
	p := gcpretry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Attempts: 4}
	calls, retries := 0, 0
	err := gcpretry.Do(context.Background(), p, func(int, time.Duration, error) { retries++ }, func(context.Context) error {
		calls++
		return status.Error(codes.Unavailable, "down")
	})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, 4, calls)
	assert.Equal(t, 3, retries)

	calls = 0
	err = gcpretry.Do(context.Background(), p, nil, func(context.Context) error {
		calls++
		if calls < 3 {
			return status.Error(codes.Aborted, "contention")
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 3, calls)

	calls = 0
	err = gcpretry.Do(context.Background(), p, nil, func(context.Context) error {
		calls++
		return status.Error(codes.InvalidArgument, "bad")
	})
	assert.Equal(t, 1, calls, "permanent errors are not retried")
	assert.Error(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	err = gcpretry.Do(ctx, p, nil, func(context.Context) error { calls++; return nil })
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, calls)
}
