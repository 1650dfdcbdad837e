package firestore

import (
	"context"
	"strings"
	"testing"

	gfs "cloud.google.com/go/firestore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/guardstate/guardstatetest"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/integration/harness"
)

// TestMain stops the shared Firestore emulator when the tests end.
func TestMain(m *testing.M) { harness.Main(m) }

func newProject(t testing.TB) string {
	fs := harness.StartFirestore(t)
	fs.SetEnv(t)
	return fs.NewProject(t)
}

func newState(t testing.TB, cfg Config) *State {
	t.Helper()
	s, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestGuardFirestoreTwoEnclaves runs the daemon's concurrency contract
// across two states with separate clients sharing one database, as two
// enclaves do: exactly one of conflicting commits wins, every identical
// commit replays the winner, each sees the other's marks.
func TestGuardFirestoreTwoEnclaves(t *testing.T) {
	cfg := Config{Project: newProject(t)}
	a := guardstatetest.Store{GuardState: newState(t, cfg)}
	b := guardstatetest.Store{GuardState: newState(t, cfg)}
	t.Run("Concurrent", func(t *testing.T) { watermarktest.Concurrent(t, a, b) })
	t.Run("ConcurrentReplay", func(t *testing.T) { watermarktest.ConcurrentReplay(t, a, b) })
	t.Run("SeesOther", func(t *testing.T) { watermarktest.SeesOther(t, a, b) })
}

// TestGuardFirestoreLayout: the daemon's document path and fields, under the
// guard's own collection.
func TestGuardFirestoreLayout(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Project: newProject(t)}
	s := newState(t, cfg)
	k := watermarktest.Key(watermarktest.Ghostnet, watermark.KindAttestation)
	m := watermarktest.M(77, 3, 0xcd, "BLsigX")
	_, err := s.Commit(ctx, k, m)
	require.NoError(t, err)
	c, err := gfs.NewClient(ctx, cfg.Project)
	require.NoError(t, err)
	defer c.Close()
	snap, err := c.Doc(strings.Join([]string{DefaultCollection, k.ChainID, k.Kind, k.PKH}, "/")).Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"request": "attestation", "lvl": int64(77), "round": int64(3), "digest": m.Digest[:], "signature": watermarktest.Sig("BLsigX"),
	}, snap.Data())
	// A restarted enclave (a new state) knows nothing locally and still
	// refuses a conflicting mark and replays the identical one.
	fresh := newState(t, cfg)
	if _, ok, _ := fresh.Check(ctx, k); ok {
		t.Fatal("a fresh state claims a mark it never read")
	}
	_, err = fresh.Commit(ctx, k, watermarktest.M(77, 3, 0xce, "other"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	got, err := fresh.Commit(ctx, k, watermarktest.M(77, 3, 0xcd, "again"))
	require.NoError(t, err)
	assert.Equal(t, m, got)
}

// TestGuardFirestoreMalformed: a document the guard cannot read refuses
// the commit with an error naming it (never read as "no mark").
func TestGuardFirestoreMalformed(t *testing.T) {
	ctx := context.Background()
	s := newState(t, Config{Project: newProject(t)})
	for _, doc := range []map[string]any{
		{"lvl": "ten", "round": int64(0), "digest": make([]byte, 32)},
		{"lvl": int64(10), "round": int64(0)},
		{"lvl": int64(10), "round": int64(0), "digest": make([]byte, 31)},
		{"lvl": int64(10), "round": int64(-1), "digest": make([]byte, 32)},
		{"lvl": int64(10), "round": int64(0), "digest": make([]byte, 32), "signature": int64(3)},
	} {
		k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
		ref := s.doc(k)
		_, err := ref.Set(ctx, doc)
		require.NoError(t, err)
		_, err = s.Commit(ctx, k, watermarktest.M(11, 0, 1, "s"))
		require.Error(t, err, "%v", doc)
		assert.Contains(t, err.Error(), ref.Path)
	}
}

func TestGuardFirestoreConfig(t *testing.T) {
	t.Setenv(EmulatorEnv, "")
	for _, cfg := range []Config{{}, {Project: "p", Collection: "a/b"}, {Project: "p"}} {
		_, err := New(context.Background(), cfg)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "%+v: %v", cfg, err)
	}
}

// TestGuardFirestoreContextBound: an ended context fails the commit as
// unavailable.
func TestGuardFirestoreContextBound(t *testing.T) {
	s := newState(t, Config{Project: newProject(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	_, err := s.Commit(ctx, k, watermarktest.M(1, 0, 1, "s"))
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err), "%v", err)
	_, ok, _ := s.Check(context.Background(), k)
	assert.False(t, ok)
}

// BenchmarkGuardCommit is the guard's commit latency (one transaction per
// mark, rising levels of one key).
func BenchmarkGuardCommit(b *testing.B) {
	watermarktest.BenchmarkCommit(b, storeOf(newState(b, Config{Project: newProject(b)})))
}

func storeOf(s *State) guardstatetest.Store { return guardstatetest.Store{GuardState: s} }
