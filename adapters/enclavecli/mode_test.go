package enclavecli

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunRejectsUnknownMode(t *testing.T) {
	err := Run(context.Background(), []string{"--mode", "aws", "--kms-key-file", filepath.Join(t.TempDir(), "k")}, io.Discard, io.Discard)
	require.ErrorContains(t, err, `invalid --mode "aws" (want confidentialspace or nitro)`)
}
