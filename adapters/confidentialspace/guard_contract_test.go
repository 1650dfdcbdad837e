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
	wmem "github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/ports"
)

// permissiveGuard lets every key type sign consensus operations and
// transactions.
const permissiveGuard = `{"key_types":{
  "tz1":{"allow":{"block":[],"preattestation":[],"attestation":[],"generic":["transaction","reveal","delegation"]}},
  "tz2":{"allow":{"block":[],"preattestation":[],"attestation":[],"generic":["transaction","reveal","delegation"]}},
  "tz3":{"allow":{"block":[],"preattestation":[],"attestation":[],"generic":["transaction","reveal","delegation"]}},
  "tz4":{"allow":{"block":[],"preattestation":[],"attestation":[],"generic":["transaction","reveal","delegation"]}}}}`

// TestGuardContract runs the enclave backend contract, unchanged, against
// an enclave whose guard is on with a permissive policy: the daemon's
// path through a guarded enclave keeps every promise of the contract.
func TestGuardContract(t *testing.T) {
	rules, err := guard.ParseRules([]byte(permissiveGuard))
	require.NoError(t, err)
	g, err := guard.New(rules, wmem.New(wmem.Config{}), guard.Options{})
	require.NoError(t, err)
	m := enclavetest.StartGuardedMock(t, enclavetest.ModeConfidentialSpace, enclave.NewGuard(g))
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
