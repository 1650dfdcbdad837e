package confidentialspace

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain"
)

// attestedBase is a vault section with the attested channel; the cases
// below replace SECTION. Line 5 is the attested_channel line.
const attestedBase = `vaults:
  cs:
    driver: confidentialspace
    config:
SECTION
      host: 10.20.0.10
      wip_provider_path: w
      encryption_key_path: k
`

// parseAttestedConfig loads text as the daemon's configuration file and
// parses the cs vault's section; a failure is reported as `sigil config
// check` reports it (without a file name: "line N: FIELD: problem").
func parseAttestedConfig(t *testing.T, text string) (Config, error) {
	t.Helper()
	c, err := config.Parse([]byte(text), t.TempDir())
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseConfig(c.Vaults["cs"].Decoder())
	if err != nil {
		require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
		return Config{}, c.Wrap("vaults.cs.config", err)
	}
	return cfg, nil
}

// TestAttestConfig: the attested_channel section decodes strictly, with
// variables expanded, and is checked at load (its files read); every error
// is at the setting's line and names it; and a configuration that loads
// has the channel on whenever the file has the section — null, empty,
// emptied by a variable or reached through an alias or merge key included.
func TestAttestConfig(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "client.key")
	_, err := securechannel.GenerateClientKey(key)
	require.NoError(t, err)
	loose := filepath.Join(dir, "loose.key")
	data, err := os.ReadFile(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(loose, data, 0o600))
	require.NoError(t, os.Chmod(loose, 0o644))
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, attestationtest.NewIssuer(t).CAPEM(), 0o600))
	d := attestationtest.Digest
	t.Setenv("SIGIL_TEST_KEY", key)
	t.Setenv("SIGIL_TEST_DIGEST", d)
	t.Setenv("SIGIL_TEST_EMPTY", "")

	on := map[string]string{
		"plain":     fmt.Sprintf("      attested_channel:\n        client_key_file: %s\n        image_digests: [%s]", key, d),
		"variables": "      attested_channel:\n        client_key_file: ${SIGIL_TEST_KEY}\n        image_digests: [\"${SIGIL_TEST_DIGEST}\"]\n        audience: ${SIGIL_TEST_EMPTY:-sigil-enclave}",
		"every setting": fmt.Sprintf("      attested_channel:\n        client_key_file: %s\n        image_digests: [%s, sha256:%s]\n        audience: a\n        token_type: OIDC\n"+
			"        issuer: https://issuer.example\n        issuer_ca_file: %s\n        client_pins_env: PINS\n        leeway: 30s", key, d, strings.Repeat("0", 64), ca),
		"flow mapping": fmt.Sprintf("      attested_channel: {client_key_file: %s, image_digests: [%s]}", key, d),
		"anchored":     fmt.Sprintf("      attested_channel: &ac\n        client_key_file: %s\n        image_digests: [%s]", key, d),
		"alias":        fmt.Sprintf("      storage: {driver: file, config: &ac {client_key_file: %s, image_digests: [%s]}}\n      attested_channel: *ac", key, d),
		"merge key":    fmt.Sprintf("      <<: {attested_channel: {client_key_file: %s, image_digests: [%s]}}", key, d),
	}
	for name, section := range on {
		t.Run("on/"+name, func(t *testing.T) {
			cfg, err := parseAttestedConfig(t, strings.Replace(attestedBase, "SECTION", section, 1))
			require.NoError(t, err)
			require.NotNil(t, cfg.AttestedChannel, "the file has attested_channel, yet the channel is off")
			require.Equal(t, key, cfg.AttestedChannel.ClientKeyFile)
			require.Contains(t, cfg.AttestedChannel.ImageDigests, d)
		})
	}
	off, err := parseAttestedConfig(t, strings.Replace(attestedBase, "SECTION\n", "", 1))
	require.NoError(t, err)
	require.Nil(t, off.AttestedChannel, "no section, no channel")

	section := func(lines ...string) string {
		return "      attested_channel:\n        " + strings.Join(lines, "\n        ")
	}
	keyLine, digestLine := "client_key_file: "+key, "image_digests: ["+d+"]"
	refused := []struct {
		name, section string
		line          int
		field, want   string
	}{
		{"null", "      attested_channel:", 5, "attested_channel", "must be a section"},
		{"tilde", "      attested_channel: ~", 5, "attested_channel", "must be a section"},
		{"a variable set but empty", "      attested_channel: ${SIGIL_TEST_EMPTY}", 5, "attested_channel", "set but empty"},
		{"emptied by a default", "      attested_channel: ${SIGIL_TEST_UNSET:-}", 5, "attested_channel", "must be a section"},
		{"a string", "      attested_channel: \"on\"", 5, "attested_channel", "must be a section"},
		{"a list", "      attested_channel: [" + key + "]", 5, "attested_channel", "must be a section"},
		{"an alias of null", "      storage: {driver: file, config: &n ~}\n      attested_channel: *n", 6, "attested_channel", "must be a section"},
		{"empty mapping", "      attested_channel: {}", 5, "attested_channel.client_key_file", "required"},
		{"unknown setting", section(keyLine, digestLine, "image_digest: ["+d+"]"), 8, "attested_channel.image_digest", "did you mean image_digests?"},
		{"misspelt key setting", section("client_keyfile: "+key, digestLine), 6, "attested_channel.client_keyfile", "did you mean client_key_file?"},
		{"no image digests", section(keyLine), 5, "attested_channel.image_digests", "required"},
		{"empty image digests", section(keyLine, "image_digests: []"), 7, "attested_channel.image_digests", "required"},
		{"image digests emptied", section(keyLine, "image_digests: ${SIGIL_TEST_EMPTY:-}"), 7, "attested_channel.image_digests", "required"},
		{"a digest emptied", section(keyLine, "image_digests: [\"${SIGIL_TEST_EMPTY:-}\"]"), 7, "attested_channel.image_digests[0]", "not an image digest"},
		{"second digest malformed", section(keyLine, "image_digests:", "  - "+d, "  - sha256:beef"), 9, "attested_channel.image_digests[1]", "not an image digest"},
		{"image digests a string", section(keyLine, "image_digests: "+d), 7, "attested_channel.image_digests", "cannot unmarshal"},
		{"no key file", section(digestLine), 5, "attested_channel.client_key_file", "required"},
		{"key file emptied", section("client_key_file: ${SIGIL_TEST_EMPTY:-}", digestLine), 6, "attested_channel.client_key_file", "required"},
		{"key file absent", section("client_key_file: "+filepath.Join(dir, "none.key"), digestLine), 6, "attested_channel.client_key_file", "no such file"},
		{"key file readable by others", section("client_key_file: "+loose, digestLine), 6, "attested_channel.client_key_file", "mode 0644"},
		{"key file not a key", section("client_key_file: "+ca, digestLine), 6, "attested_channel.client_key_file", ""},
		{"leeway out of range", section(keyLine, digestLine, "leeway: 10m"), 8, "attested_channel.leeway", "out of range"},
		{"leeway not a duration", section(keyLine, digestLine, "leeway: soon"), 8, "attested_channel.leeway", "invalid duration"},
		{"token type", section(keyLine, digestLine, "token_type: SAML"), 8, "attested_channel.token_type", ""},
		{"PKI without root", section(keyLine, digestLine, "token_type: PKI"), 5, "attested_channel.pki_root_file", "required"},
		{"issuer not https", section(keyLine, digestLine, "issuer: http://issuer.example"), 8, "attested_channel.issuer", "https"},
		{"jwks_url not https", section(keyLine, digestLine, "jwks_url: http://issuer.example/jwks"), 8, "attested_channel.jwks_url", "https"},
		{"issuer CA absent", section(keyLine, digestLine, "issuer_ca_file: "+filepath.Join(dir, "none.pem")), 8, "attested_channel.issuer_ca_file", "no such file"},
		{"jwks file absent", section(keyLine, digestLine, "jwks_file: "+filepath.Join(dir, "none.json")), 8, "attested_channel.jwks_file", "no such file"},
	}
	for _, c := range refused {
		t.Run("refused/"+c.name, func(t *testing.T) {
			cfg, err := parseAttestedConfig(t, strings.Replace(attestedBase, "SECTION", c.section, 1))
			require.Error(t, err, "accepted (channel on: %v)", cfg.AttestedChannel != nil)
			prefix := fmt.Sprintf("line %d: vaults.cs.config.%s: ", c.line, c.field)
			require.True(t, strings.HasPrefix(err.Error(), prefix), "%v\nwant the prefix %s", err, prefix)
			require.Contains(t, err.Error(), c.want)
			require.NotContains(t, err.Error(), "-----BEGIN")
		})
	}
}
