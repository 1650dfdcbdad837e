package witness

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// guardOver opens the witness under dir and guards inner with it.
func guardOver(t *testing.T, dir string, inner ports.WatermarkStore, accept ...string) (*Guard, *Log, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	g, err := NewGuard(context.Background(), inner, l, GuardOptions{Backend: "test backend", AcceptReset: accept, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	return g, l, &logs
}

// The guarded store passes the contract suite of every backend.
func TestGuardContract(t *testing.T) {
	watermarktest.Run(t, func(t testing.TB) ports.WatermarkStore {
		dir := t.TempDir()
		l, err := Open(dir, Options{})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		g, err := NewGuard(context.Background(), mem.New(mem.Config{}), l, GuardOptions{})
		require.NoError(t, err)
		return g
	})
}

// Every committed mark is witnessed before Commit returns; a first witness
// is initialised from the backend's marks, and says so.
func TestGuardWitnessesCommits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	inner := mem.New(mem.Config{})
	pre := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	_, err := inner.Commit(ctx, pre, watermarktest.M(40, 0, 1, "pre"))
	require.NoError(t, err)
	g, l, logs := guardOver(t, dir, inner)
	assert.Contains(t, logs.String(), "watermark witness initialised from the backend's marks")
	m, ok := l.Mark(pre)
	require.True(t, ok, "initialised from the backend")
	assert.Equal(t, int32(40), m.Level)
	assert.Empty(t, m.Signature)

	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	got, err := g.Commit(ctx, k, watermarktest.M(7, 0, 1, "a"))
	require.NoError(t, err)
	assert.Equal(t, watermarktest.Sig("a"), got.Signature)
	m, ok = l.Mark(k)
	require.True(t, ok)
	assert.Equal(t, int32(7), m.Level)
	// Refusals and replays pass through.
	_, err = g.Commit(ctx, k, watermarktest.M(6, 0, 1, "b"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	got, err = g.Commit(ctx, k, watermarktest.M(7, 0, 1, "again"))
	require.NoError(t, err)
	assert.Equal(t, watermarktest.Sig("a"), got.Signature)
	require.NoError(t, g.Ready())
}

// The file backend's watermark_v2 lost (deleted, or replaced by an older
// copy) while the witness survives: at the next start every key whose
// backend mark is behind is held back — Check and Commit refuse, naming the
// key, both marks and how to proceed — other keys sign, and Ready says so.
// The explicit reset of one key is accepted and logged; the witness
// survives the loss of watermark_v2, and watermark_v2 the loss of the
// witness.
func TestGuardFileBackendLost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *wmfile.Store {
		s, err := wmfile.Open(wmfile.Config{BaseDir: dir})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	st := open()
	g, l, _ := guardOver(t, dir, st)
	lost := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	behind := watermarktest.Key(watermarktest.Mainnet, watermark.KindPreattestation)
	kept := watermarktest.Key(watermarktest.Ghostnet, watermark.KindBlock)
	for _, c := range []struct {
		k watermark.Key
		m watermark.Mark
	}{{lost, watermarktest.M(100, 0, 1, "a")}, {behind, watermarktest.M(100, 0, 1, "b")}, {kept, watermarktest.M(5, 0, 1, "c")}} {
		_, err := g.Commit(ctx, c.k, c.m)
		require.NoError(t, err)
	}
	older := filepath.Join(dir, "older.json")
	data, err := os.ReadFile(filepath.Join(dir, "watermark_v2", watermarktest.Mainnet+".json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(older, data, 0o600))
	_, err = g.Commit(ctx, behind, watermarktest.M(200, 0, 1, "b2"))
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.NoError(t, l.Close())

	// The chain file replaced by the older copy: the attestation key's
	// mark is in it (not behind), the preattestation key's is behind
	// (100 < 200).
	require.NoError(t, os.Rename(older, filepath.Join(dir, "watermark_v2", watermarktest.Mainnet+".json")))
	g, l, logs := guardOver(t, dir, open())
	assert.Contains(t, logs.String(), "watermark backend behind the witness")
	_, _, err = g.Check(ctx, behind)
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	for _, want := range []string{behind.PKH, "the backend holds level 100 round 0, this daemon committed level 200 round 0", "test backend", l.Location(),
		"sigil watermarks import", "--accept-watermark-reset " + behind.PKH} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = g.Commit(ctx, behind, watermarktest.M(150, 0, 1, "x"))
	require.Error(t, err, "a level between the backend's and the witness's must not sign")
	_, err = g.Commit(ctx, lost, watermarktest.M(101, 0, 1, "y"))
	require.NoError(t, err, "a key whose backend is not behind signs")
	_, err = g.Commit(ctx, kept, watermarktest.M(6, 0, 1, "z"))
	require.NoError(t, err)
	require.ErrorContains(t, g.Ready(), "1 key(s) held back ("+behind.PKH+")")

	// The witness lost instead: it is initialised again from the backend,
	// logged, and nothing is held back.
	l.Close()
	require.NoError(t, os.RemoveAll(filepath.Join(dir, DirName)))
	g, l, logs = guardOver(t, dir, g.Unwrap())
	assert.Contains(t, logs.String(), "initialised from the backend")
	require.NoError(t, g.Ready())
	l.Close()

	// watermark_v2 deleted entirely: every witnessed key is held back;
	// --accept-watermark-reset for one of them is logged and lets it
	// sign from the backend's (empty) marks; naming a key that is not
	// behind is a warning, not an error.
	g.Unwrap().(*wmfile.Store).Close()
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "watermark_v2")))
	g, l, logs = guardOver(t, dir, open(), lost.PKH, "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb")
	assert.Contains(t, logs.String(), "watermark reset accepted (--accept-watermark-reset)")
	assert.Contains(t, logs.String(), "pkh="+lost.PKH)
	assert.Contains(t, logs.String(), "nothing to accept")
	_, err = g.Commit(ctx, lost, watermarktest.M(1, 0, 1, "reset"))
	require.NoError(t, err, "the accepted key signs from the backend's marks")
	_, err = g.Commit(ctx, kept, watermarktest.M(1, 0, 1, "no"))
	require.Error(t, err, "another lost key is still held back")
	assert.Contains(t, err.Error(), "the backend holds no mark, this daemon committed level 6 round 0")
	l.Close()
	// The reset is durable: at the next start the key is not held back.
	g, _, _ = guardOver(t, dir, g.Unwrap())
	_, _, err = g.Check(ctx, lost)
	require.NoError(t, err)
}

// A backend that loses marks while the daemon runs (a table deleted and
// re-created by someone else, a collection emptied): the mark it returns is
// behind the witness, so the signature is withheld and the key held back.
func TestGuardBackendLosesMarksWhileRunning(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	inner := &swappable{WatermarkStore: mem.New(mem.Config{})}
	g, _, logs := guardOver(t, dir, inner)
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	_, err := g.Commit(ctx, k, watermarktest.M(100, 0, 1, "a"))
	require.NoError(t, err)
	inner.WatermarkStore = mem.New(mem.Config{}) // emptied
	_, err = g.Commit(ctx, k, watermarktest.M(50, 0, 2, "b"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the signature is not released")
	assert.Contains(t, logs.String(), "signature withheld")
	_, _, err = g.Check(ctx, k)
	require.Error(t, err, "held back from now on")
	require.Error(t, g.Ready())
}

type swappable struct{ ports.WatermarkStore }

// A backend that cannot be read at start (Firestore or DynamoDB down) does
// not stop the daemon: consensus signing waits, Ready says why, and the
// comparison is retried until the backend answers (the retry period is
// crossed); then keys sign, or are held back, as at a normal start.
func TestGuardBackendUnreadableAtStart(t *testing.T) {
	old := RetryEvery
	RetryEvery = 50 * time.Millisecond
	defer func() { RetryEvery = old }()
	ctx := context.Background()
	dir := t.TempDir()
	inner := &flaky{WatermarkStore: mem.New(mem.Config{})}
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	_, err := inner.WatermarkStore.Commit(ctx, k, watermarktest.M(10, 0, 1, "a"))
	require.NoError(t, err)
	inner.failures.Store(3)
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	defer l.Close()
	var logs syncBuf
	g, err := NewGuard(ctx, inner, l, GuardOptions{Backend: "flaky", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err, "an unreadable backend does not stop the start")
	defer g.Stop()
	_, _, err = g.Check(ctx, k)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "could not be read yet")
	require.ErrorContains(t, g.Ready(), "could not be read yet")
	assert.Contains(t, logs.String(), "cannot read the backend's marks")
	require.Eventually(t, func() bool { return g.Ready() == nil }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, logs.String(), "witness initialised from the backend")
	got, err := g.Commit(ctx, k, watermarktest.M(11, 0, 1, "b"))
	require.NoError(t, err)
	assert.Equal(t, int32(11), got.Level)
	m, _ := l.Mark(k)
	assert.Equal(t, int32(11), m.Level)
}

// flaky fails its first Exports.
type flaky struct {
	ports.WatermarkStore
	failures atomic.Int32
}

func (f *flaky) Export(ctx context.Context) ([]watermark.Record, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, domain.Errorf(domain.KindUnavailable, "backend down")
	}
	return f.WatermarkStore.Export(ctx)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
