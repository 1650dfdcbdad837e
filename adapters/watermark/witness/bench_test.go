package witness

import (
	"context"
	"testing"

	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/ports"
)

// The witness's cost: the file backend with and without it (both fsync to
// the same file system), and the witness alone (over the mem backend, which
// does no I/O). docs/performance.md has the figures.

func fileStore(b *testing.B, dir string) ports.WatermarkStore {
	s, err := wmfile.Open(wmfile.Config{BaseDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func guarded(b *testing.B, dir string, inner ports.WatermarkStore) ports.WatermarkStore {
	l, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	g, err := NewGuard(context.Background(), inner, l, GuardOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

func BenchmarkCommit(b *testing.B) {
	b.Run("file", func(b *testing.B) { watermarktest.BenchmarkCommit(b, fileStore(b, b.TempDir())) })
	b.Run("file+witness", func(b *testing.B) {
		dir := b.TempDir()
		watermarktest.BenchmarkCommit(b, guarded(b, dir, fileStore(b, dir)))
	})
	b.Run("mem+witness", func(b *testing.B) {
		watermarktest.BenchmarkCommit(b, guarded(b, b.TempDir(), mem.New(mem.Config{})))
	})
}

func BenchmarkCommitParallel(b *testing.B) {
	b.Run("file", func(b *testing.B) { watermarktest.BenchmarkCommitParallel(b, fileStore(b, b.TempDir())) })
	b.Run("file+witness", func(b *testing.B) {
		dir := b.TempDir()
		watermarktest.BenchmarkCommitParallel(b, guarded(b, dir, fileStore(b, dir)))
	})
	b.Run("mem+witness", func(b *testing.B) {
		watermarktest.BenchmarkCommitParallel(b, guarded(b, b.TempDir(), mem.New(mem.Config{})))
	})
}
