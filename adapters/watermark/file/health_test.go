package file

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain/watermark"
)

// fullFSChildEnv marks the child process of TestHealthyOnFullFileSystem,
// which runs in its own mount namespace.
const fullFSChildEnv = "SIGIL_WATERMARK_FULL_FS_CHILD"

// On a full file system every commit fails ("no space left on device"),
// yet creating an empty file still works (it needs no data block), so the
// old probe answered healthy. The probe writes and syncs real data: it
// fails while the file system is full, as a commit does, and passes again
// once space is freed. The file system is a 1 MiB tmpfs mounted in a
// private mount namespace of a child process (unshare -m), so nothing on
// the host is touched.
func TestHealthyOnFullFileSystem(t *testing.T) {
	if os.Getenv(fullFSChildEnv) == "1" {
		fullFSChild(t)
		return
	}
	unshare, err := exec.LookPath("unshare")
	require.NoError(t, err, "unshare (util-linux) runs this test in a private mount namespace")
	cmd := exec.Command(unshare, "-m", "--propagation", "private", os.Args[0], "-test.run=^TestHealthyOnFullFileSystem$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fullFSChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child (unshare -m, mount tmpfs) failed; it needs CAP_SYS_ADMIN (root):\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestHealthyOnFullFileSystem", "%s", out)
}

func fullFSChild(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"), "mount tmpfs")
	defer syscall.Unmount(dir, 0)
	s, err := Open(Config{BaseDir: dir})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	require.NoError(t, s.Healthy(ctx))
	k := watermarktest.Key(chainID, watermark.KindAttestation)
	_, err = s.Commit(ctx, k, watermarktest.M(1, 0, 1, "a"))
	require.NoError(t, err)

	// Fill the file system.
	fill := filepath.Join(dir, "fill")
	f, err := os.Create(fill)
	require.NoError(t, err)
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			break
		}
	}
	require.NoError(t, f.Close())

	// A commit fails, and so does the probe, for the same reason; an
	// empty file can still be created (what the old probe checked).
	_, err = s.Commit(ctx, k, watermarktest.M(2, 0, 2, "b"))
	require.Error(t, err, "a commit on a full file system")
	empty, err := os.CreateTemp(filepath.Join(dir, DirName), ".empty-*")
	require.NoError(t, err, "an empty file can be created on the full file system")
	empty.Close()
	os.Remove(empty.Name())
	err = s.Healthy(ctx)
	require.Error(t, err, "healthy on a full file system")
	assert.Contains(t, err.Error(), "no space left on device")
	assert.Contains(t, err.Error(), "cannot record marks")
	ents, _ := os.ReadDir(filepath.Join(dir, DirName))
	for _, e := range ents {
		assert.False(t, strings.HasPrefix(e.Name(), ".health-"), "the probe left %s", e.Name())
	}

	require.NoError(t, os.Remove(fill))
	require.NoError(t, s.Healthy(ctx))
	_, err = s.Commit(ctx, k, watermarktest.M(2, 0, 2, "b"))
	require.NoError(t, err)
}
