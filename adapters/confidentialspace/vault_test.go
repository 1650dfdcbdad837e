package confidentialspace

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/ports"
)

func TestOpenVault(t *testing.T) {
	src := `
host: 127.0.0.1
port: 2001
wip_provider_path: projects/1/providers/p
encryption_key_path: projects/p/cryptoKeys/k
connections: 2
rpc_timeout: 3s
storage:
  driver: file
  config: /tmp/keys.json
`
	var node yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(src), &node))
	var gotDriver, gotPath string
	env := vault.Env{OpenStorage: func(_ context.Context, driver string, decode func(any) error) (ports.KeyStore, error) {
		gotDriver = driver
		require.NoError(t, decode(&gotPath))
		return nil, nil
	}}
	inst, err := OpenVault(context.Background(), "cs", node.Content[0].Decode, env)
	require.NoError(t, err)
	defer inst.Close()
	require.Equal(t, "ConfidentialSpace", inst.Display, "Signatory's confidentialspace vault's name")
	e := inst.Enclave.(*Enclave)
	require.Equal(t, "127.0.0.1:2001", e.addr)
	require.Equal(t, 2, e.Size())
	require.Equal(t, "3s", e.cfg.RPCTimeout.String())
	require.Equal(t, "file", gotDriver)
	require.Equal(t, "/tmp/keys.json", gotPath)

	// Environment fallbacks and missing fields.
	t.Setenv("CONFIDENTIAL_SPACE_HOST", "")
	_, err = OpenVault(context.Background(), "cs", nil, env)
	require.ErrorContains(t, err, "missing host")
	t.Setenv("CONFIDENTIAL_SPACE_HOST", "10.0.0.1")
	t.Setenv("GCP_WIP_PROVIDER_PATH", "w")
	t.Setenv("GCP_KMS_ENCRYPTION_KEY_PATH", "k")
	gotDriver = "unset"
	env.OpenStorage = func(_ context.Context, driver string, decode func(any) error) (ports.KeyStore, error) {
		gotDriver = driver
		require.Nil(t, decode)
		return nil, nil
	}
	inst, err = OpenVault(context.Background(), "cs", nil, env)
	require.NoError(t, err)
	defer inst.Close()
	require.Equal(t, "10.0.0.1:2000", inst.Enclave.(*Enclave).addr)
	require.Equal(t, "", gotDriver)
}
