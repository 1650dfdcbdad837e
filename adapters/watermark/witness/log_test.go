package witness

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
)

func rec(k watermark.Key, level, round int32, d byte) watermark.Record {
	return watermark.Record{Key: k, Mark: watermark.Mark{Level: level, Round: round, Digest: [32]byte{d}}}
}

func TestLogRecordsRaisesAndPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	assert.True(t, l.Fresh())
	assert.Equal(t, filepath.Join(dir, "witness", "marks.log"), l.Location())
	k1 := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	k2 := watermarktest.Key(watermarktest.Ghostnet, watermark.KindBlock)
	require.NoError(t, l.Witness(ctx, rec(k1, 10, 0, 1), rec(k2, 5, 1, 2)))
	require.NoError(t, l.Witness(ctx, rec(k1, 9, 0, 3)), "a lower mark changes nothing")
	require.NoError(t, l.Witness(ctx, rec(k1, 10, 1, 4)))
	m, ok := l.Mark(k1)
	require.True(t, ok)
	assert.Equal(t, watermark.Mark{Level: 10, Round: 1, Digest: [32]byte{4}}, m)
	require.NoError(t, l.Close())

	l2, err := Open(dir, Options{})
	require.NoError(t, err)
	defer l2.Close()
	assert.False(t, l2.Fresh())
	got := l2.Records()
	require.Len(t, got, 2)
	m, _ = l2.Mark(k1)
	assert.Equal(t, int32(1), m.Round)
	m, _ = l2.Mark(k2)
	assert.Equal(t, int32(5), m.Level)
	data, err := os.ReadFile(l2.Location())
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), header))
	assert.NotContains(t, string(data), "signature")
}

// One process at a time: the daemon holds the record's lock; a read-only
// reader (export --witness) needs none and writes nothing.
func TestLogLockAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	defer l.Close()
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	require.NoError(t, l.Witness(context.Background(), rec(k, 1, 0, 1)))
	_, err = Open(dir, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use by another process")
	recs, path, err := ReadRecords(dir)
	require.NoError(t, err)
	assert.Equal(t, l.Location(), path)
	require.Len(t, recs, 1)
	ro, err := Open(dir, Options{ReadOnly: true})
	require.NoError(t, err)
	assert.Error(t, ro.Witness(context.Background(), rec(k, 2, 0, 1)))
	none, _, err := ReadRecords(t.TempDir())
	require.NoError(t, err)
	assert.Empty(t, none)
}

// Concurrent commits share writes (group commit) and every acknowledged
// mark is on disk.
func TestLogConcurrentWitnesses(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	keys := make([]watermark.Key, 16)
	for i := range keys {
		keys[i] = watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	}
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lvl := int32(1); lvl <= 50; lvl++ {
				assert.NoError(t, l.Witness(context.Background(), rec(k, lvl, 0, byte(i))))
			}
		}()
	}
	wg.Wait()
	require.NoError(t, l.Close())
	l2, err := Open(dir, Options{})
	require.NoError(t, err)
	defer l2.Close()
	for _, k := range keys {
		m, ok := l2.Mark(k)
		require.True(t, ok)
		assert.Equal(t, int32(50), m.Level)
	}
	assert.LessOrEqual(t, l2.lines, 2*len(keys)+64, "compacted at open")
}

// A crash during an append leaves a torn last line: it is dropped (its
// commit never returned) and the file is repaired. A damaged line before
// the last is corruption: refused, naming the file and the line.
func TestLogTornAndCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	require.NoError(t, l.Witness(ctx, rec(k, 1, 0, 1)))
	require.NoError(t, l.Witness(ctx, rec(k, 2, 0, 1)))
	path := l.Location()
	require.NoError(t, l.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)

	// Torn: the last line cut short.
	require.NoError(t, os.WriteFile(path, data[:len(data)-5], 0o600))
	var logs bytes.Buffer
	l, err = Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	m, _ := l.Mark(k)
	assert.Equal(t, int32(1), m.Level, "the torn mark is dropped")
	assert.Contains(t, logs.String(), "torn line")
	require.NoError(t, l.Witness(ctx, rec(k, 3, 0, 1)), "appending after a repaired tail")
	require.NoError(t, l.Close())
	l, err = Open(dir, Options{})
	require.NoError(t, err)
	m, _ = l.Mark(k)
	assert.Equal(t, int32(3), m.Level)
	require.NoError(t, l.Close())

	// Corrupt: a flipped byte in the first mark line.
	data, err = os.ReadFile(path)
	require.NoError(t, err)
	bad := bytes.Replace(data, []byte(`"level":1`), []byte(`"level":7`), 1)
	require.NotEqual(t, data, bad)
	bad = append(bad, data[len(header):]...) // more lines after it
	require.NoError(t, os.WriteFile(path, bad, 0o600))
	_, err = Open(dir, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+" is corrupt at line 2: checksum mismatch")
	assert.Equal(t, domain.KindInternal, domain.KindOf(err))

	require.NoError(t, os.WriteFile(path, []byte("not a witness\n"), 0o600))
	_, err = Open(dir, Options{})
	require.ErrorContains(t, err, "not a watermark witness")

	// An empty file (a crash while it was created) starts again, fresh.
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	l, err = Open(dir, Options{})
	require.NoError(t, err)
	assert.True(t, l.Fresh())
	require.NoError(t, l.Witness(ctx, rec(k, 1, 0, 1)))
	require.NoError(t, l.Close())
	l, err = Open(dir, Options{})
	require.NoError(t, err)
	assert.Len(t, l.Records(), 1)
	require.NoError(t, l.Close())
}

// A long log is compacted while running and at open; Forget drops marks
// durably.
func TestLogCompactAndForget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	k2 := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	require.NoError(t, l.Witness(ctx, rec(k2, 1, 0, 1)))
	for lvl := int32(1); lvl <= 5000; lvl++ {
		require.NoError(t, l.Witness(ctx, rec(k, lvl, 0, 1)))
	}
	assert.Less(t, l.lines, 4200, "compacted while running")
	require.NoError(t, l.Forget([]watermark.Key{k}))
	require.NoError(t, l.Close())
	l, err = Open(dir, Options{})
	require.NoError(t, err)
	defer l.Close()
	_, ok := l.Mark(k)
	assert.False(t, ok, "forgotten")
	_, ok = l.Mark(k2)
	assert.True(t, ok)
	assert.Equal(t, 1, l.lines)
}
