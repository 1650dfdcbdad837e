package confidentialspace

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
)

// TestNumericSettingsValidated: every numeric setting is range-checked, with
// the field and its allowed range in the error (connections: -3 used to be
// taken as the default).
func TestNumericSettingsValidated(t *testing.T) {
	base := "host: 127.0.0.1\nwip_provider_path: w\nencryption_key_path: k\n"
	for src, want := range map[string]string{
		"connections: -3":   "connections: -3 is out of range (allowed: 1 to 256)",
		"connections: 0":    "connections: 0 is out of range (allowed: 1 to 256)",
		"connections: 257":  "connections: 257 is out of range",
		"dial_timeout: 0s":  "dial_timeout: 0s is out of range (allowed: 1ms to 10m0s)",
		"dial_timeout: -5s": "dial_timeout: -5s is out of range",
		"rpc_timeout: 11m":  "rpc_timeout: 11m0s is out of range",
		"rpc_timeout: soon": `rpc_timeout: invalid duration "soon"`,
		"port: 0":           `invalid port "0" (allowed: 1 to 65535)`,
		"port: 70000":       `invalid port "70000" (allowed: 1 to 65535)`,
		"connections: lots": "invalid config",
	} {
		t.Run(src, func(t *testing.T) {
			var node yaml.Node
			require.NoError(t, yaml.Unmarshal([]byte(base+src), &node))
			_, err := OpenVault(context.Background(), "cs", config.StrictDecoder(node.Content[0]), vault.Env{})
			require.ErrorContains(t, err, want)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
		})
	}
}
