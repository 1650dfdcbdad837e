package adversarial

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// fileVaultConfig writes a configuration whose only vault is the in-process
// `file` vault reading keyFile (or two such vaults when second is set), with
// extra appended (policies, hook…).
func (e *env) fileVaultConfig(keyFile, second, extra string) string {
	e.t.Helper()
	cfg := fmt.Sprintf("base_dir: %s\nserver:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\nvaults:\n  local:\n    driver: file\n    config:\n      file: %s\n", e.dir, keyFile)
	if second != "" {
		cfg += fmt.Sprintf("  other:\n    driver: file\n    config:\n      file: %s\n", second)
	}
	p := filepath.Join(e.dir, "sigil-file-vault.yaml")
	require.NoError(e.t, os.WriteFile(p, []byte(cfg+extra), 0o600))
	return p
}

// secretFile writes a `file` vault key file holding entries (raw JSON).
func (e *env) secretFile(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	require.NoError(e.t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func newSecret(t *testing.T) (tezos.PrivateKey, string) {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	pk, err := sk.Public()
	require.NoError(t, err)
	return sk, pk.Hash().String()
}

// The `file` vault read a key file holding `null` as zero keys (healthy,
// every key 404), and a repeated field kept the last value. Both are now
// corruption, refused at start naming the file; so is a key listed twice.
func TestFileVaultKeyFileStrict(t *testing.T) {
	e := newEnv(t)
	sk, pkh := newSecret(t)
	entry := fmt.Sprintf(`{"name": "baker", "value": "unencrypted:%s"}`, sk.Base58())
	for _, tc := range []struct{ name, content, want string }{
		{"null", "null\n", "the document is null"},
		{"duplicate field", fmt.Sprintf(`[{"name": "baker", "value": "unencrypted:%s", "value": "unencrypted:%s"}]`, sk.Base58(), sk.Base58()), `"value" appears twice`},
		{"case variant", fmt.Sprintf(`[{"name": "baker", "value": "unencrypted:%s", "Value": "unencrypted:%s"}]`, sk.Base58(), sk.Base58()), "both appear"},
		{"key twice", "[" + entry + ", " + strings.Replace(entry, "baker", "copy", 1) + "]", `entry 2 ("copy") holds the key ` + pkh + `, which entry 1 ("baker") holds too`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := e.secretFile("secret-"+strings.ReplaceAll(tc.name, " ", "-")+".json", tc.content)
			out := e.refuses(t, e.fileVaultConfig(keys, "", policy(pkh)))
			assert.Contains(t, out, tc.want)
			assert.Contains(t, out, keys, "the error names the key file")
			assert.NotContains(t, out, sk.Base58()[4:20], "the error repeats the secret")
		})
	}
}

// A key present in two vaults was taken silently (the last vault loaded
// won). It is refused, naming both vaults: /healthz says so and the key
// does not sign.
func TestKeyInTwoVaultsRefused(t *testing.T) {
	e := newEnv(t)
	sk, pkh := newSecret(t)
	content := fmt.Sprintf(`[{"name": "baker", "value": "unencrypted:%s"}]`, sk.Base58())
	a, b := e.secretFile("a.json", content), e.secretFile("b.json", content)
	d := e.start(e.fileVaultConfig(a, b, policy(pkh)), false)
	var r result
	eventually(t, 10*time.Second, "/healthz naming both vaults", func() bool {
		r = get(t, d.utility+"/healthz")
		return r.status == 503 && strings.Contains(r.body, "is in vault")
	})
	assert.Contains(t, r.body, `vault \"local\" and in vault \"other\"`)
	s := post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex))
	assert.Equal(t, 503, s.status, s.body)
	assert.Empty(t, s.sig)
}

// The policy hook client followed HTTP_PROXY: whoever runs the proxy
// approved every request. With a proxy that approves everything in the
// daemon's environment, a hook that cannot be reached directly still means
// no signature.
func TestPolicyHookIgnoresHTTPProxy(t *testing.T) {
	e := newEnv(t)
	sk, pkh := newSecret(t)
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer proxy.Close()
	keys := e.secretFile("secret.json", fmt.Sprintf(`[{"name": "baker", "value": "unencrypted:%s"}]`, sk.Base58()))
	cfg := e.fileVaultConfig(keys, "", policy(pkh)+"policy_hook:\n  address: http://sigil-policy-hook.invalid/approve\n  timeout: 2s\n")
	h := e.startEnv(cfg, true, "HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
	r := post(t, h.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex))
	assert.Equal(t, 500, r.status, r.body)
	assert.Empty(t, r.sig, "signed on the proxy's approval")
	assert.Zero(t, proxied.Load(), "the hook request went through HTTP_PROXY")
}

// `sigil import` repeated the first 64 bytes of an argument it did not
// recognise — more than a whole edsk; `--password` stayed in the process
// list without a word. Neither is repeated now, and --password warns.
func TestImportArgumentsNotEchoed(t *testing.T) {
	e := newEnv(t)
	cfg := e.writeConfig("")
	sk, _ := newSecret(t)
	for _, arg := range []string{hex.EncodeToString(sk.Bytes), "edks" + sk.Base58()[4:], "x" + sk.Base58()} {
		out, err := exec.Command(e.sigil, "-c", cfg, "--timeout", "10s", "import", arg).CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "not repeated")
		assert.NotContains(t, string(out), arg[:8])
	}
	enc := "edesk1dNZsbAwzwQuB1ZaCmZjht5GRzHdz5zbdyFywHH7MLU2Cm6Zd3omav47UrSkV4PMXyrpbEaPaR58FBveUGx"
	out, _ := exec.Command(e.sigil, "-c", cfg, "--timeout", "10s", "import", "--password", "not-the-password", enc).CombinedOutput()
	assert.Contains(t, string(out), "warning: --password can be seen by other users of this machine (ps)")
	assert.NotContains(t, string(out), "not-the-password")
}

// `watermarks import` accepted a chain id whose checksum does not hold
// (a mark for a chain that does not exist), and `watermarks export -o LINK`
// overwrote whatever the link pointed at.
func TestWatermarkFilesChecked(t *testing.T) {
	e := newEnv(t)
	cfg := e.writeConfig("")
	bad := filepath.Join(e.dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`[{"chain_id":"NetXdQprcVkpaWV","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"block","level":1,"round":0,"digest":"`+strings.Repeat("00", 32)+`"}]`), 0o600))
	out, err := exec.Command(e.sigil, "-c", cfg, "watermarks", "import", bad).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "bad checksum")

	target := filepath.Join(e.dir, "precious")
	require.NoError(t, os.WriteFile(target, []byte("precious\n"), 0o600))
	link := filepath.Join(e.dir, "marks.json")
	require.NoError(t, os.Symlink(target, link))
	out, err = exec.Command(e.sigil, "-c", cfg, "watermarks", "export", "-o", link).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "symbolic link")
	data, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "precious\n", string(data), "the link's target was overwritten")
}
