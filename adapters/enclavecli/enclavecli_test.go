package enclavecli

import (
	"bufio"
	"context"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
)

func TestRunServesAndStops(t *testing.T) {
	for _, kms := range []string{"local", "passthrough"} {
		t.Run(kms, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			keyFile := filepath.Join(t.TempDir(), "kms.key")
			go func() {
				done <- Run(ctx, []string{"--listen", "127.0.0.1:0", "--kms", kms, "--kms-key-file", keyFile, "--log-level", "debug"}, pw, io.Discard)
				pw.Close()
			}()
			line, err := bufio.NewReader(pr).ReadString('\n')
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(line, "listening on 127.0.0.1:"), line)
			addr := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
			go io.Copy(io.Discard, pr)

			c := wiretest.Dial(t, addr)
			require.NoError(t, c.Call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "w", EncryptionKeyPath: "k"}), nil))

			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("run did not stop")
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--kms", "cloud"},
		{"--log-level", "loud"},
		{"--reply-delay", "-1s"},
		{"--listen", "not an address"},
		{"extra"},
	} {
		err := Run(context.Background(), append(args, "--kms-key-file", filepath.Join(t.TempDir(), "k")), io.Discard, io.Discard)
		require.Error(t, err, "%v", args)
	}
}

func TestVersionFlag(t *testing.T) {
	var out strings.Builder
	require.NoError(t, Run(context.Background(), []string{"--version"}, &out, io.Discard))
	s := out.String()
	require.True(t, strings.HasPrefix(s, "sigil-enclave "), s)
	for _, f := range []string{"\nversion:", "\nrevision:", "\nbuild time:", "\ngo:", runtime.Version()} {
		require.Contains(t, s, f)
	}
}
