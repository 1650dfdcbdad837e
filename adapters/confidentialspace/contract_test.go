package confidentialspace

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/ports"
)

// TestContract runs the enclave backend contract against the mock enclave
// over TCP, with file key storage.
func TestContract(t *testing.T) {
	m := enclavetest.StartMock(t, enclavetest.ModeConfidentialSpace)
	dir := t.TempDir()
	enclavetest.Run(t, enclavetest.Backend{
		Open: func(t *testing.T) vault.Instance {
			host, port, _ := net.SplitHostPort(m.Addr)
			src := fmt.Sprintf("host: %s\nport: %q\nwip_provider_path: w\nencryption_key_path: k\nconnections: 3\n", host, port)
			var node yaml.Node
			require.NoError(t, yaml.Unmarshal([]byte(src), &node))
			inst, err := OpenVault(context.Background(), "cs", config.StrictDecoder(node.Content[0]), vault.Env{
				BaseDir: dir,
				OpenStorage: func(ctx context.Context, _ string, decode func(any) error) (ports.KeyStore, error) {
					return file.Open(ctx, decode, storage.Env{BaseDir: dir})
				},
			})
			require.NoError(t, err)
			return inst
		},
		CanGenerate: true, CanImport: true, KeysPersist: true,
		Restart:         func(t *testing.T) { m.Restart(t, "") },
		RestartOtherKMS: func(t *testing.T) { m.Restart(t, filepath.Join(t.TempDir(), "other-kms.key")) },
		Lie:             func(_ *testing.T, on bool) { m.Lie(on) },
	})
}
