package nitro

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/ports"
)

// TestContract runs the enclave backend contract against the mock enclave in
// Nitro mode, reached over TCP through the dial seam, with Signatory's
// default Nitro key file under the base directory.
func TestContract(t *testing.T) {
	noAWSEnv(t)
	m := enclavetest.StartMock(t, enclavetest.ModeNitro)
	dir := t.TempDir()
	enclavetest.Run(t, enclavetest.Backend{
		Open: func(t *testing.T) vault.Instance {
			inst, err := NewOpener(TCPDial(m.Addr), nil)(context.Background(), "nitro",
				decoder(t, "encryption_key_id: arn:aws:kms:eu-west-1:1:key/k\nconnections: 3\ncredentials: {access_key_id: AKIA, secret_access_key: s, region: eu-west-1}"),
				vault.Env{BaseDir: dir, OpenStorage: func(ctx context.Context, _ string, decode func(any) error) (ports.KeyStore, error) {
					return file.Open(ctx, decode, storage.Env{BaseDir: dir})
				}})
			require.NoError(t, err)
			return inst
		},
		CanGenerate: true, CanImport: true, KeysPersist: true,
		Restart:         func(t *testing.T) { m.Restart(t, "") },
		RestartOtherKMS: func(t *testing.T) { m.Restart(t, filepath.Join(t.TempDir(), "other-kms.key")) },
		Lie:             func(_ *testing.T, on bool) { m.Lie(on) },
	})
	require.FileExists(t, filepath.Join(dir, DefaultKeyFile))
}
