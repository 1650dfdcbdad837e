package localstandin

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLocalKMS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.key")
	k1, err := New(path)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	blob, err := k1.Seal([]byte("secret"))
	require.NoError(t, err)
	require.False(t, bytes.Contains(blob, []byte("secret")))

	// Same file, same key: a restarted enclave opens old blobs.
	k2, err := New(path)
	require.NoError(t, err)
	plain, err := k2.Open(blob)
	require.NoError(t, err)
	require.Equal(t, []byte("secret"), plain)

	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 1
		_, err := k2.Open(bad)
		require.ErrorIs(t, err, ErrOpen)
	}
	_, err = k2.Open(blob[:5])
	require.ErrorIs(t, err, ErrOpen)

	other, err := New(filepath.Join(t.TempDir(), "other.key"))
	require.NoError(t, err)
	_, err = other.Open(blob)
	require.ErrorIs(t, err, ErrOpen)

	short := filepath.Join(t.TempDir(), "short.key")
	require.NoError(t, os.WriteFile(short, []byte("short"), 0o600))
	_, err = New(short)
	require.ErrorContains(t, err, "5 bytes, want 32")
}
