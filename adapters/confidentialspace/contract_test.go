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
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/ports"
)

// TestContract runs the enclave backend contract against the mock enclave
// over TCP, with file key storage.
func TestContract(t *testing.T) {
	runContract(t, enclavetest.StartMock(t, enclavetest.ModeConfidentialSpace))
}

// TestContractAttested runs the same contract, unchanged, with the vault's
// attested_channel section set: every connection is the attested channel
// to an in-process enclave whose tokens come from a fake launcher and
// issuer.
func TestContractAttested(t *testing.T) {
	m := enclavetest.StartAttested(t, enclavetest.AttestedOptions{})
	runContract(t, m)
	// Every connection confirmed its admission with an AttestationToken
	// exchange, which only the attested channel answers.
	require.Positive(t, m.Stats().Requests["AttestationToken"], "the suite did not run over the attested channel")
}

// attestedYAML is the attested_channel section of s, as a vault's
// configuration file holds it.
func attestedYAML(s securechannel.ClientSettings) string {
	return fmt.Sprintf("attested_channel:\n  client_key_file: %q\n  image_digests: [%q]\n  issuer: %q\n  issuer_ca_file: %q\n  leeway: %s\n",
		s.ClientKeyFile, s.ImageDigests[0], s.Issuer, s.IssuerCAFile, s.Leeway)
}

func runContract(t *testing.T, m *enclavetest.Mock) {
	dir := t.TempDir()
	enclavetest.Run(t, enclavetest.Backend{
		Open: func(t *testing.T) vault.Instance {
			host, port, _ := net.SplitHostPort(m.Addr)
			src := fmt.Sprintf("host: %s\nport: %q\nwip_provider_path: w\nencryption_key_path: k\nconnections: 3\n", host, port)
			if m.Attested != nil {
				src += attestedYAML(m.Attested.Settings)
			}
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
