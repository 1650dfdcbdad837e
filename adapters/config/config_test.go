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
		{"sever:\n  address: :1\n", "field sever not found"},
		{"tezos:\n  tz1nope: {}\n", "tezos.tz1nope"},
		{"policy_hook:\n  address: http://x\n", "policy_hook"},
		{"tezos:\n  tz1burnburnburnburnburnburnburjAYjjX:\n    authorized_keys: [edpkNOPE]\n", "authorized_keys"},
		{"watermark:\n  config: {}\n", "watermark.driver"},
		{"base_dir: [1\n", "parsing YAML"},
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
