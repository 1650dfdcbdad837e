package watermark_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
)

func TestSharedLockOnePerKey(t *testing.T) {
	s := wm.NewShared[int]("test watermark")
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	other := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)

	unlock, err := s.Lock(context.Background(), k)
	require.NoError(t, err)

	// While k is held, a second Lock on k waits until its context ends, and
	// then fails as unavailable, naming the store and the key.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Lock(ctx, k)
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "test watermark: waiting for "+k.String())

	// Another key does not wait on k.
	unlockOther, err := s.Lock(context.Background(), other)
	require.NoError(t, err)
	unlockOther()

	// Released, k can be taken again.
	unlock()
	unlock, err = s.Lock(context.Background(), k)
	require.NoError(t, err)
	unlock()
}

func TestSharedLockExcludes(t *testing.T) {
	s := wm.NewShared[int]("test watermark")
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				unlock, err := s.Lock(context.Background(), k)
				if !assert.NoError(t, err) {
					return
				}
				n := inside.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				inside.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), most.Load(), "holders of one key at once")
}

func TestSharedRemember(t *testing.T) {
	s := wm.NewShared[int]("test watermark")
	k := watermarktest.Key(watermarktest.Ghostnet, watermark.KindPreattestation)

	_, ok, err := s.Check(k)
	require.NoError(t, err)
	assert.False(t, ok, "nothing seen yet")

	steps := []struct {
		seen, want watermark.Mark
	}{
		{watermarktest.M(10, 1, 1, ""), watermarktest.M(10, 1, 1, "")},
		// Same position, with a signature: the signed mark replaces the
		// unsigned one.
		{watermarktest.M(10, 1, 1, "a"), watermarktest.M(10, 1, 1, "a")},
		// Same position, another signature: the first one stays.
		{watermarktest.M(10, 1, 1, "b"), watermarktest.M(10, 1, 1, "a")},
		// Same position, unsigned: kept signed.
		{watermarktest.M(10, 1, 1, ""), watermarktest.M(10, 1, 1, "a")},
		// Lower round, lower level: never lowers.
		{watermarktest.M(10, 0, 2, "c"), watermarktest.M(10, 1, 1, "a")},
		{watermarktest.M(9, 5, 2, "c"), watermarktest.M(10, 1, 1, "a")},
		// Higher round, then higher level: rises.
		{watermarktest.M(10, 2, 3, "d"), watermarktest.M(10, 2, 3, "d")},
		{watermarktest.M(11, 0, 4, ""), watermarktest.M(11, 0, 4, "")},
	}
	for i, st := range steps {
		s.Remember(k, st.seen)
		got, ok, err := s.Check(k)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, st.want, got, "step %d: after seeing %v %q", i, st.seen, st.seen.Signature)
	}

	// Keys are independent.
	_, ok, err = s.Check(watermarktest.Key(watermarktest.Ghostnet, watermark.KindPreattestation))
	require.NoError(t, err)
	assert.False(t, ok)

	// An invalid key is refused as invalid.
	_, _, err = s.Check(watermark.Key{ChainID: "nope", PKH: k.PKH, Kind: k.Kind})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

func TestSharedState(t *testing.T) {
	type state struct{ version int }
	s := wm.NewShared[state]("test watermark")
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	other := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)

	_, ok := s.State(k)
	assert.False(t, ok)
	s.SetState(k, state{1})
	s.SetState(other, state{7})
	st, ok := s.State(k)
	assert.True(t, ok)
	assert.Equal(t, state{1}, st)
	s.SetState(k, state{2})
	st, _ = s.State(k)
	assert.Equal(t, state{2}, st)

	s.ForgetState(k)
	_, ok = s.State(k)
	assert.False(t, ok, "forgotten")
	st, ok = s.State(other)
	assert.True(t, ok, "another key is kept")
	assert.Equal(t, state{7}, st)
	s.ForgetState(k) // forgetting twice is harmless
}
