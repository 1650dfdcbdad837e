package atomicfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o644))
	require.NoError(t, atomicfile.Write(p, []byte("new"), 0o600, nil))
	b, _ := os.ReadFile(p)
	assert.Equal(t, "new", string(b))
	st, _ := os.Stat(p)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// A failure before the rename leaves the old content and no temp file.
	var sawTmp string
	err := atomicfile.Write(p, []byte("newer"), 0o600, func(tmp string) error {
		sawTmp = tmp
		b, _ := os.ReadFile(tmp)
		assert.Equal(t, "newer", string(b), "the temp file is complete before the rename")
		return errors.New("injected")
	})
	require.ErrorContains(t, err, "injected")
	b, _ = os.ReadFile(p)
	assert.Equal(t, "new", string(b))
	_, statErr := os.Stat(sawTmp)
	assert.True(t, os.IsNotExist(statErr))
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1)

	// A symlink is followed.
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(p, link))
	require.NoError(t, atomicfile.Write(link, []byte("via link"), 0o600, nil))
	b, _ = os.ReadFile(p)
	assert.Equal(t, "via link", string(b))
	fi, _ := os.Lstat(link)
	assert.True(t, fi.Mode()&os.ModeSymlink != 0)

	require.Error(t, atomicfile.Write(filepath.Join(dir, "missing", "x"), nil, 0o600, nil))
}
