package firestore

import (
	"context"
	"strings"
	"testing"

	gfs "cloud.google.com/go/firestore"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/ports"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain stops the shared Firestore emulator when the tests end.
func TestMain(m *testing.M) { harness.Main(m) }

// newProject points the Firestore client at the shared emulator for t and
// returns a project id no other test uses, so that each test sees an empty
// database.
func newProject(t testing.TB) string {
	fs := harness.StartFirestore(t)
	fs.SetEnv(t)
	return fs.NewProject(t)
}

func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	watermarktest.Run(t, func(t testing.TB) ports.WatermarkStore {
		return newStore(t, Config{Project: newProject(t)})
	})
}

// TestTwoInstances runs the concurrency tests across two stores with
// separate clients sharing one database, as two daemons do.
func TestTwoInstances(t *testing.T) {
	cfg := Config{Project: newProject(t), Collection: "shared"}
	a, b := newStore(t, cfg), newStore(t, cfg)
	t.Run("Concurrent", func(t *testing.T) { watermarktest.Concurrent(t, a, b) })
	t.Run("ConcurrentReplay", func(t *testing.T) { watermarktest.ConcurrentReplay(t, a, b) })
	t.Run("SeesOther", func(t *testing.T) { watermarktest.SeesOther(t, a, b) })
}

// TestLayout checks Signatory's document path and field names.
func TestLayout(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Project: newProject(t)}
	s := newStore(t, cfg)
	k := watermarktest.Key(watermarktest.Ghostnet, watermark.KindPreattestation)
	m := watermarktest.M(77, 3, 0xcd, "BLsigX")
	_, err := s.Commit(ctx, k, m)
	require.NoError(t, err)

	c, err := gfs.NewClient(ctx, cfg.Project)
	require.NoError(t, err)
	defer c.Close()
	snap, err := c.Doc(strings.Join([]string{"watermark", k.ChainID, k.Kind, k.PKH}, "/")).Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"request": "preattestation", "lvl": int64(77), "round": int64(3), "digest": m.Digest[:], "signature": watermarktest.Sig("BLsigX"),
	}, snap.Data())
}

// TestSignatoryDocument reads a document as Signatory writes it (digest as
// an array of integers, no signature).
func TestSignatoryDocument(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Project: newProject(t), Collection: "wm"}
	s := newStore(t, cfg)
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	digest := [32]byte{1, 2, 3}
	_, err := s.client.Collection("wm").Doc(k.ChainID).Collection(k.Kind).Doc(k.PKH).Set(ctx, struct {
		Request string    `firestore:"request"`
		Level   int32     `firestore:"lvl"`
		Round   int32     `firestore:"round"`
		Digest  *[32]byte `firestore:"digest"`
	}{"block", 10, 1, &digest})
	require.NoError(t, err)
	recs, err := s.Export(ctx)
	require.NoError(t, err)
	require.Equal(t, []watermark.Record{{Key: k, Mark: watermark.Mark{Level: 10, Round: 1, Digest: digest}}}, recs)
	// The very block Signatory signed (its digest) is signed again, and
	// nothing is recorded.
	again := watermark.Mark{Level: 10, Round: 1, Digest: digest, Signature: watermarktest.Sig("x")}
	got, err := s.Commit(ctx, k, again)
	require.NoError(t, err)
	assert.Equal(t, again, got)
	recs, err = s.Export(ctx)
	require.NoError(t, err)
	require.Equal(t, []watermark.Record{{Key: k, Mark: watermark.Mark{Level: 10, Round: 1, Digest: digest}}}, recs, "the document is still Signatory's")
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 10, Round: 1, Digest: [32]byte{9}, Signature: watermarktest.Sig("x")})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	// Signatory recorded the block at its payload round: another block of
	// level 10 may have any fitness round, and is refused.
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 10, Round: 2, Digest: [32]byte{9}, Signature: watermarktest.Sig("x")})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 11, Round: 0, Digest: digest, Signature: watermarktest.Sig("x")})
	assert.NoError(t, err)
}

func TestMalformedDocument(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Project: newProject(t)}
	s := newStore(t, cfg)
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	ref := s.doc(k)
	_, err := ref.Set(ctx, map[string]any{"lvl": "ten", "round": 0})
	require.NoError(t, err)
	_, err = s.Commit(ctx, k, watermarktest.M(11, 0, 1, "s"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), ref.Path)
	_, err = s.Export(ctx)
	assert.ErrorContains(t, err, ref.Path)
}

func TestConfig(t *testing.T) {
	_, err := New(context.Background(), Config{})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	_, err = New(context.Background(), Config{Project: "p", Collection: "a/b"})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

// TestContextBound: an ended context makes Commit fail as unavailable
// without recording anything.
func TestContextBound(t *testing.T) {
	watermarktest.ContextBound(t, newStore(t, Config{Project: newProject(t)}))
}

func BenchmarkCommit(b *testing.B) {
	watermarktest.BenchmarkCommit(b, newStore(b, Config{Project: newProject(b)}))
}

func BenchmarkCommitParallel(b *testing.B) {
	watermarktest.BenchmarkCommitParallel(b, newStore(b, Config{Project: newProject(b)}))
}
