package nitro

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// noAWSEnv clears what the AWS default chain reads, so that nothing is
// fetched from the network (no instance metadata) and results do not
// depend on the machine.
func noAWSEnv(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"ENCLAVE_CID", "ENCLAVE_PORT", "ENCRYPTION_KEY_ID", "AWS_KMS_ENCRYPTION_KEY_ID", "PROXY_LOCAL_PORT", "PROXY_REMOTE_ADDRESS"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func decoder(t *testing.T, src string) func(any) error {
	var node yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(src), &node))
	return config.StrictDecoder(node.Content[0])
}

type storeCall struct {
	driver string
	path   string
}

func fakeEnv(t *testing.T, got *storeCall) vault.Env {
	return vault.Env{BaseDir: "/var/lib/signatory", OpenStorage: func(_ context.Context, driver string, decode func(any) error) (ports.KeyStore, error) {
		got.driver = driver
		got.path = ""
		if decode != nil {
			require.NoError(t, decode(&got.path))
		}
		return nil, nil
	}}
}

// TestSignatoryConfigLoadsVerbatim: a nitro vault section as Signatory's
// documentation writes it opens, with its defaults and fields.
func TestSignatoryConfigLoadsVerbatim(t *testing.T) {
	noAWSEnv(t)
	var got storeCall
	src := `
enclave_cid: 16
enclave_port: 2000
encryption_key_id: arn:aws:kms:us-east-1:123456789012:key/abcd
proxy_local_port: 8000
credentials:
  access_key_id: AKIAEXAMPLE
  secret_access_key: wJalrXUtnFEMI
  session_token: tok
  region: us-east-1
storage:
  driver: file
  config: /var/lib/signatory/keys.json
`
	var vc VaultConfig
	require.NoError(t, decoder(t, src)(&vc))
	s, err := vc.resolve(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint32(16), s.cfg.CID)
	require.Equal(t, uint32(2000), s.cfg.Port)
	require.Equal(t, uint32(8000), s.proxyPort)
	require.Equal(t, "arn:aws:kms:us-east-1:123456789012:key/abcd", s.cfg.EncryptionKeyID)
	c, err := s.cfg.Credentials.Retrieve(context.Background())
	require.NoError(t, err)
	require.Equal(t, "AKIAEXAMPLE", c.AccessKeyID)
	require.Equal(t, "wJalrXUtnFEMI", c.SecretAccessKey)
	require.Equal(t, "tok", *c.SessionToken)
	require.Equal(t, "us-east-1", c.Region)
	require.NotContains(t, c.String(), "wJalrXUtnFEMI")

	inst, err := OpenVault(context.Background(), "nitro", decoder(t, src), fakeEnv(t, &got))
	require.NoError(t, err)
	require.Equal(t, "NitroEnclave", inst.Display, "Signatory's nitro vault's name")
	require.NoError(t, inst.Close())
	require.Equal(t, storeCall{"file", "/var/lib/signatory/keys.json"}, got)

	// No storage section: Signatory's Nitro key file under base_dir.
	inst, err = OpenVault(context.Background(), "nitro", decoder(t, "encryption_key_id: k\ncredentials: {access_key_id: a, secret_access_key: s, region: r}"), fakeEnv(t, &got))
	require.NoError(t, err)
	require.NoError(t, inst.Close())
	require.Equal(t, storeCall{"", "/var/lib/signatory/enclave_keys.json"}, got)
}

// TestEnvironmentFallbacks: Signatory's variables fill absent fields, and
// the AWS default chain supplies credentials when the section is absent.
func TestEnvironmentFallbacks(t *testing.T) {
	noAWSEnv(t)
	t.Setenv("ENCLAVE_CID", "21")
	t.Setenv("ENCLAVE_PORT", "5005")
	t.Setenv("ENCRYPTION_KEY_ID", "alias/sigil")
	t.Setenv("PROXY_LOCAL_PORT", "8001")
	t.Setenv("PROXY_REMOTE_ADDRESS", "kms.eu-west-1.amazonaws.com:443")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_REGION", "eu-west-1")
	var vc VaultConfig
	s, err := vc.resolve(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint32(21), s.cfg.CID)
	require.Equal(t, uint32(5005), s.cfg.Port)
	require.Equal(t, uint32(8001), s.proxyPort)
	require.Equal(t, "kms.eu-west-1.amazonaws.com:443", s.proxyTo)
	require.Equal(t, "alias/sigil", s.cfg.EncryptionKeyID)
	c, err := s.cfg.Credentials.Retrieve(context.Background())
	require.NoError(t, err)
	require.Equal(t, "AKIAENV", c.AccessKeyID)
	require.Nil(t, c.SessionToken)
	require.Equal(t, "eu-west-1", c.Region)

	// The YAML wins over the environment.
	require.NoError(t, decoder(t, "enclave_cid: 30\nencryption_key_id: k2")(&vc))
	s, err = vc.resolve(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint32(30), s.cfg.CID)
	require.Equal(t, "k2", s.cfg.EncryptionKeyID)
}

// TestSettingsValidated: every numeric setting is range-checked, with the
// field and the allowed range in the error; required fields are named.
func TestSettingsValidated(t *testing.T) {
	noAWSEnv(t)
	base := "encryption_key_id: k\ncredentials: {access_key_id: a, secret_access_key: s, region: r}\n"
	for src, want := range map[string]string{
		"enclave_cid: 2":            "enclave_cid 2 is out of range (allowed: 3 to 4294967294)",
		"enclave_cid: -1":           "enclave_cid -1 is out of range",
		"enclave_cid: 4294967295":   "enclave_cid 4294967295 is out of range",
		"enclave_port: 0":           "enclave_port 0 is out of range (allowed: 1 to 4294967294)",
		"enclave_port: -3":          "enclave_port -3 is out of range",
		"proxy_local_port: 0":       "proxy_local_port 0 is out of range",
		"connections: -3":           "connections: -3 is out of range (allowed: 1 to 256)",
		"connections: 0":            "connections: 0 is out of range",
		"connections: 1000":         "connections: 1000 is out of range",
		"rpc_timeout: -1s":          "rpc_timeout: -1s is out of range (allowed: 1ms to 10m0s)",
		"dial_timeout: 0s":          "dial_timeout: 0s is out of range",
		"dial_timeout: forever":     `dial_timeout: invalid duration "forever"`,
		"proxy_remote_address: kms": `proxy_remote_address "kms": want host:port`,
		"enclave_cid: sixteen":      "invalid config",
		"unknown_field: 1":          "invalid config",
	} {
		t.Run(src, func(t *testing.T) {
			_, err := OpenVault(context.Background(), "n", decoder(t, base+src), vault.Env{})
			require.ErrorContains(t, err, want)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
		})
	}
	_, err := OpenVault(context.Background(), "n", decoder(t, "encryption_key_id: k\ncredentials: {access_key_id: a, region: r}"), vault.Env{})
	require.ErrorContains(t, err, "give both access_key_id and secret_access_key")
	t.Setenv("ENCLAVE_PORT", "x")
	_, err = OpenVault(context.Background(), "n", decoder(t, base), vault.Env{})
	require.ErrorContains(t, err, "$ENCLAVE_PORT (enclave_port) is not a number")
	t.Setenv("ENCLAVE_PORT", "")
	_, err = OpenVault(context.Background(), "n", decoder(t, "credentials: {access_key_id: a, secret_access_key: s, region: r}"), vault.Env{})
	require.ErrorContains(t, err, "missing encryption_key_id")
	_, err = OpenVault(context.Background(), "n", decoder(t, "encryption_key_id: k\ncredentials: {access_key_id: a, secret_access_key: s}"), vault.Env{})
	require.ErrorContains(t, err, "no AWS region")
}

// TestOverTCPSeam: the backend signs through the mock enclave in Nitro mode,
// reached through the dial seam (vsock is not available here). The mock
// refuses a Confidential Space Initialize, so this proves the AWS payload
// is what goes out.
func TestOverTCPSeam(t *testing.T) {
	noAWSEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := enclavetest.NewServer(t, enclavetest.ServerOptions{Platform: enclavetest.ModeNitro})
	go func() { _ = srv.Serve(ln) }()

	var got storeCall
	open := NewOpener(TCPDial(ln.Addr().String()), nil)
	inst, err := open(context.Background(), "n", decoder(t, "encryption_key_id: k\nconnections: 2\ncredentials: {access_key_id: a, secret_access_key: s, region: r}"), fakeEnv(t, &got))
	require.NoError(t, err)
	defer inst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sealed, err := inst.Enclave.Generate(ctx, tezos.BLS)
	require.NoError(t, err)
	sig, err := inst.Enclave.Sign(ctx, sealed.PublicKey.Hash(), []byte("m"), 2)
	require.NoError(t, err)
	require.NoError(t, sealed.PublicKey.Verify([]byte("m"), sig, 2))
	require.Equal(t, 2, inst.Enclave.(*enclaverpc.Client).Size())

	// A Confidential Space enclave refuses this backend's Initialize: the
	// client never becomes ready.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cs := enclavetest.NewServer(t, enclavetest.ServerOptions{})
	go func() { _ = cs.Serve(ln2) }()
	inst2, err := NewOpener(TCPDial(ln2.Addr().String()), nil)(context.Background(), "n", decoder(t, "encryption_key_id: k\ncredentials: {access_key_id: a, secret_access_key: s, region: r}"), fakeEnv(t, &got))
	require.NoError(t, err)
	defer inst2.Close()
	time.Sleep(200 * time.Millisecond)
	require.Error(t, inst2.Enclave.Ready(ctx))
}

// TestKMSProxy: with proxy_remote_address set, connections accepted on the
// proxy port (vsock in production; TCP here) reach the remote address, and
// Close stops the proxy.
func TestKMSProxy(t *testing.T) {
	noAWSEnv(t)
	remote, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer remote.Close()
	go func() {
		for {
			c, err := remote.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }() // echo
		}
	}()
	var proxyLn net.Listener
	listen := func(port uint32) (net.Listener, error) {
		require.Equal(t, uint32(8123), port)
		proxyLn, err = net.Listen("tcp", "127.0.0.1:0")
		return proxyLn, err
	}
	var got storeCall
	inst, err := NewOpener(TCPDial("127.0.0.1:1"), listen)(context.Background(), "n",
		decoder(t, "encryption_key_id: k\nproxy_local_port: 8123\nproxy_remote_address: "+remote.Addr().String()+"\ncredentials: {access_key_id: a, secret_access_key: s, region: r}"), fakeEnv(t, &got))
	require.NoError(t, err)
	c, err := net.Dial("tcp", proxyLn.Addr().String())
	require.NoError(t, err)
	_, err = c.Write([]byte("kms request"))
	require.NoError(t, err)
	buf := make([]byte, 11)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "kms request", string(buf))
	require.NoError(t, inst.Close())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(buf)
	require.Error(t, err, "the proxied connection is closed with the vault")
	_, err = net.Dial("tcp", proxyLn.Addr().String())
	require.Error(t, err)
}
