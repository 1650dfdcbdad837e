package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/config"
)

const signatoryExample = `
base_dir: ${TEST_HOME}/.signatory
server:
  address: :6732
  utility_address: :9583
vaults:
  confidentialspace:
    driver: confidentialspace
    config:
      host: 10.0.0.100
      port: 2000
      wip_provider_path: projects/123456789/locations/global/workloadIdentityPools/my-pool/providers/my-provider
      encryption_key_path: projects/my-project/locations/global/keyRings/my-keyring/cryptoKeys/my-key
      storage:
        driver: file
        config: ${BASE_DIR}/keys.json
tezos:
  tz1burnburnburnburnburnburnburjAYjjX:
    log_payloads: true
    allow:
      block:
      generic: [transaction, delegation]
    authorized_keys: edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav
`

func TestSignatoryExample(t *testing.T) {
	t.Setenv("TEST_HOME", "/home/baker")
	c, err := config.Parse([]byte(signatoryExample), "")
	require.NoError(t, err)
	assert.Equal(t, "/home/baker/.signatory", c.BaseDir)
	assert.Equal(t, ":6732", c.Server.Address)
	require.Contains(t, c.Vaults, "confidentialspace")
	v := c.Vaults["confidentialspace"]
	assert.Equal(t, "confidentialspace", v.Driver)
	var raw struct {
		Host    string `yaml:"host"`
		Port    string `yaml:"port"`
		WIP     string `yaml:"wip_provider_path"`
		KMS     string `yaml:"encryption_key_path"`
		Storage struct {
			Driver string `yaml:"driver"`
			Config string `yaml:"config"`
		} `yaml:"storage"`
	}
	require.NoError(t, v.Decoder()(&raw))
	assert.Equal(t, "2000", raw.Port)
	assert.Equal(t, "/home/baker/.signatory/keys.json", raw.Storage.Config)
	p := c.Tezos["tz1burnburnburnburnburnburnburjAYjjX"]
	require.NotNil(t, p)
	assert.True(t, p.LogPayloads)
	assert.Equal(t, []string{"transaction", "delegation"}, p.Allow["generic"])
	assert.Contains(t, p.Allow, "block")
	require.Len(t, p.AuthorizedKeys, 1)
	assert.Equal(t, "edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav", p.AuthorizedKeys[0].String())
}

func TestDefaultsAndOverride(t *testing.T) {
	c, err := config.Parse([]byte(""), "")
	require.NoError(t, err)
	assert.Equal(t, config.DefaultAddress, c.Server.Address)
	assert.Equal(t, config.DefaultUtilityAddress, c.Server.UtilityAddress)
	assert.Equal(t, config.DefaultBaseDir, c.BaseDir)

	c, err = config.Parse([]byte("base_dir: /a\nvaults: {v: {driver: x, config: '${BASE_DIR}/k'}}"), "/override")
	require.NoError(t, err)
	assert.Equal(t, "/override", c.BaseDir)
	var s string
	require.NoError(t, c.Vaults["v"].Decoder()(&s))
	assert.Equal(t, "/override/k", s)
}

func TestErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"vaults:\n  cs:\n    config: {}\n", "vaults.cs.driver"},
		{"sever:\n  address: :1\n", "line 1: sever: unknown field"},
		{"tezos:\n  tz1nope: {}\n", "tezos.tz1nope"},
		{"policy_hook:\n  address: localhost:8080\n", "policy_hook.address"},
		{"tezos:\n  tz1burnburnburnburnburnburnburjAYjjX:\n    authorized_keys: [edpkNOPE]\n", "authorized_keys"},
		{"watermark:\n  config: {}\n", "watermark.driver"},
		{"base_dir: [1\n", "line 1: YAML syntax: "},
	} {
		_, err := config.Parse([]byte(tc.yaml), "")
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := config.Load(filepath.Join(dir, "missing.yaml"), false, "")
	require.Error(t, err)
	c, err := config.Load(filepath.Join(dir, "missing.yaml"), true, dir)
	require.NoError(t, err)
	assert.Equal(t, dir, c.BaseDir)
	p := filepath.Join(dir, "sigil.yaml")
	require.NoError(t, os.WriteFile(p, []byte("server:\n  address: 127.0.0.1:7000\n"), 0o600))
	c, err = config.Load(p, false, "")
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7000", c.Server.Address)
}

func TestDriverSectionsAreStrict(t *testing.T) {
	c, err := config.Parse([]byte("watermark:\n  driver: file\n  config:\n    base_dirr: /x\nvaults:\n  cs:\n    driver: confidentialspace\n    config:\n      host: h\n      conections: 3\n"), "")
	require.NoError(t, err)
	var wm struct {
		BaseDir string `yaml:"base_dir"`
	}
	err = c.Watermark.Decoder()(&wm)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "base_dirr")
	var v struct {
		Host        string `yaml:"host"`
		Connections int    `yaml:"connections"`
	}
	err = c.Vaults["cs"].Decoder()(&v)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "conections")
}

// Every way an unset variable used to become an empty value silently is an
// error naming the variable and the field.
func TestUnsetVariableIsAnError(t *testing.T) {
	const pkh = "tz1burnburnburnburnburnburnburjAYjjX"
	for _, tc := range []struct{ name, yaml, field string }{
		{"server authorized_keys", "server:\n  authorized_keys: ${SIGIL_T_UNSET}\n", "server.authorized_keys"},
		{"authorized_keys in a list", "server:\n  authorized_keys: [\"${SIGIL_T_UNSET}\"]\n", "server.authorized_keys[0]"},
		{"per-key authorized_keys", "tezos:\n  " + pkh + ":\n    authorized_keys: $SIGIL_T_UNSET\n", "tezos." + pkh + ".authorized_keys"},
		{"base_dir", "base_dir: ${SIGIL_T_UNSET}/signer\n", "base_dir"},
		{"storage path", "vaults:\n  cs:\n    driver: confidentialspace\n    config:\n      storage:\n        driver: file\n        config: ${SIGIL_T_UNSET}/keys.json\n", "vaults.cs.config.storage.config"},
		{"server address", "server:\n  address: ${SIGIL_T_UNSET}\n", "server.address"},
		{"default that refers to an unset variable", "server:\n  address: ${SIGIL_T_UNSET2:-$SIGIL_T_UNSET}\n", "server.address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "SIGIL_T_UNSET is not set")
			assert.Contains(t, err.Error(), tc.field)
			assert.Contains(t, err.Error(), "line ")
		})
	}
}

func TestVariableDefaultsAndTypes(t *testing.T) {
	t.Setenv("SIGIL_T_PORT", "7001")
	t.Setenv("SIGIL_T_EMPTY", "")
	t.Setenv("SIGIL_T_INJECT", "{generic: [transaction]}")
	c, err := config.Parse([]byte(`
base_dir: ${SIGIL_T_NODIR:-/srv/sigil}
server:
  address: 127.0.0.1:${SIGIL_T_PORT}
  utility_address: "${SIGIL_T_UTIL:-127.0.0.1:9999}"
vaults:
  cs:
    driver: confidentialspace
    config:
      connections: ${SIGIL_T_PORT}
      note: price is $$5 and $ alone
      empty: "${SIGIL_T_EMPTY:-}"
      fallback: ${SIGIL_T_EMPTY:-used}
`), "")
	require.NoError(t, err)
	assert.Equal(t, "/srv/sigil", c.BaseDir)
	assert.Equal(t, "127.0.0.1:7001", c.Server.Address)
	assert.Equal(t, "127.0.0.1:9999", c.Server.UtilityAddress)
	var v struct {
		Connections int    `yaml:"connections"`
		Note        string `yaml:"note"`
		Empty       string `yaml:"empty"`
		Fallback    string `yaml:"fallback"`
	}
	require.NoError(t, c.Vaults["cs"].Decoder()(&v))
	assert.Equal(t, 7001, v.Connections, "a plain scalar is typed from its expanded value")
	assert.Equal(t, "price is $5 and $ alone", v.Note)
	assert.Equal(t, "", v.Empty, "${VAR:-} says that empty is meant")
	assert.Equal(t, "used", v.Fallback, "as in the shell, :- takes the default for a variable set but empty")

	// A variable's value is one scalar: it cannot add YAML structure.
	_, err = config.Parse([]byte("tezos:\n  tz1burnburnburnburnburnburnburjAYjjX:\n    allow: ${SIGIL_T_INJECT}\n"), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 3")
	assert.Contains(t, err.Error(), "tezos.tz1burnburnburnburnburnburnburjAYjjX.allow")
}

func TestPresentButEmptyAuthorizedKeysRefused(t *testing.T) {
	t.Setenv("SIGIL_T_EMPTY", "")
	for _, y := range []string{
		"server:\n  authorized_keys:\n",
		"server:\n  authorized_keys: []\n",
		"server:\n  authorized_keys: ${SIGIL_T_EMPTY:-}\n",
		"server:\n  authorized_keys: \"${SIGIL_T_EMPTY:-}\"\n",
		"tezos:\n  tz1burnburnburnburnburnburnburjAYjjX:\n    authorized_keys: ~\n",
	} {
		_, err := config.Parse([]byte(y), "")
		require.Error(t, err, y)
		assert.Contains(t, err.Error(), "authorized_keys: present but empty", y)
	}
}

func TestOneDocumentOnly(t *testing.T) {
	_, err := config.Parse([]byte("server:\n  address: :1\n---\nserver:\n  authorized_keys: edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav\n"), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "second YAML document")
	assert.Contains(t, err.Error(), "line 3")
}

// Errors inside driver sections carry the file's own line numbers and the
// field's name.
func TestSectionErrorsUseFileLines(t *testing.T) {
	c, err := config.Parse([]byte("server:\n  address: :1\nvaults:\n  cs:\n    driver: confidentialspace\n    config:\n      host: h\n      connections: many\n      conections: 3\n"), "")
	require.NoError(t, err)
	var v struct {
		Host        string `yaml:"host"`
		Connections int    `yaml:"connections"`
	}
	err = c.Vaults["cs"].Decoder()(&v)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 9: conections: unknown field")
	var w struct {
		Host        string `yaml:"host"`
		Connections int    `yaml:"connections"`
		Conections  int    `yaml:"conections"`
	}
	err = c.Vaults["cs"].Decoder()(&w)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 8: connections: cannot unmarshal")
}

// Variables are expanded after parsing, so one inside a flow collection
// must be quoted; the parse error says so.
func TestUnquotedVariableInFlowCollectionHint(t *testing.T) {
	_, err := config.Parse([]byte("server:\n  authorized_keys: [${SIGIL_T_KEY}]\n"), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `quote it: ["${VAR}"]`)
}

// Nested lists in authorized_keys (YAML anchors of key groups) are
// flattened, as Signatory documents.
func TestNestedAuthorizedKeys(t *testing.T) {
	c, err := config.Parse([]byte(`
server:
  authorized_keys:
    - &ops [edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav]
    - [[edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav]]
tezos:
  tz1burnburnburnburnburnburnburjAYjjX:
    authorized_keys: *ops
`), "")
	require.NoError(t, err)
	assert.Len(t, c.Server.AuthorizedKeys, 2)
	assert.Len(t, c.Tezos["tz1burnburnburnburnburnburnburjAYjjX"].AuthorizedKeys, 1)
}
