// Package auth tests, end to end, the two Signatory features that gate a
// signature besides the key's policy: JWT authentication (server.jwt,
// POST /login, per-key jwt_users), driven by Taquito's RemoteSigner with the
// bearer header, and the policy hook (policy_hook), a hook server run by the
// test that approves, refuses, stalls, signs badly and goes down. The
// daemon and the mock enclave run as separate processes.
package auth

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Fixed operation fields for Taquito's forger: any well-formed values do.
const (
	branch      = "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2"
	destination = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
)

// env is one test's enclave, state directory and binaries.
type env struct {
	t        *testing.T
	sigil    string
	encPort  int
	dir      string
	keysPath string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	harness.SkipIfShort(t)
	e := &env{
		t:       t,
		sigil:   harness.BuildBinary(t, "./cmd/sigil"),
		encPort: harness.FreePort(t),
		dir:     t.TempDir(),
	}
	e.keysPath = filepath.Join(e.dir, "keys.json")
	harness.StartEnclave(t, harness.EnclaveOptions{Port: e.encPort, KMSKeyFile: filepath.Join(e.dir, "kms.key")})
	return e
}

// writeConfig writes base_dir, the vault on the test's enclave, listeners
// on loopback with server (indented under `server:`), and rest.
func (e *env) writeConfig(server, rest string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
%svaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: "%d"
      wip_provider_path: auth/wip
      encryption_key_path: auth/kms
      storage:
        driver: file
        config: %s
%s`, e.dir, server, e.encPort, e.keysPath, rest)
	p := filepath.Join(e.dir, "sigil.yaml")
	require.NoError(e.t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

// generate creates a key of type kt in the enclave through the CLI.
func (e *env) generate(kt string) string {
	e.t.Helper()
	cfg := e.writeConfig("", "")
	out, err := exec.Command(e.sigil, "-c", cfg, "generate", "-t", kt).CombinedOutput()
	require.NoError(e.t, err, string(out))
	fields := strings.Fields(strings.TrimSpace(string(out)))
	require.NotEmpty(e.t, fields, "generate printed nothing")
	pkh := fields[len(fields)-1]
	_, err = tezos.ParsePublicKeyHash(pkh)
	require.NoError(e.t, err, string(out))
	return pkh
}

// daemon is a running `sigil serve`.
type daemon struct {
	proc *harness.Process
	url  string
	util string // the utility listener's base URL
}

// start runs `sigil serve -c cfg` and waits until its keys are loaded.
func (e *env) start(cfg string) *daemon {
	e.t.Helper()
	h := harness.StartDaemon(e.t, harness.DaemonOptions{Binary: e.sigil, Config: cfg})
	return &daemon{proc: h.Process, url: h.API, util: h.Utility}
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// reply is one HTTP exchange's outcome.
type reply struct {
	status int
	body   string
}

// errMsg returns the message of a Signatory-shaped error body.
func (r reply) errMsg() string {
	var errs []struct{ Msg string }
	if json.Unmarshal([]byte(r.body), &errs) == nil && len(errs) == 1 {
		return errs[0].Msg
	}
	return r.body
}

// send makes one request with the given headers (pairs of name, value).
func send(t *testing.T, method, url, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{status: resp.StatusCode, body: string(b)}
}

// attestation builds a tag-21 attestation sign request on the main
// chain (0x13 ‖ chain id ‖ branch ‖ tag ‖ slot ‖ level ‖ round ‖ payload
// hash).
func attestation(level, round int32) []byte {
	b := []byte{0x13, 0x7a, 0x06, 0xa7, 0x70}
	b = append(b, make([]byte, 32)...)
	b = append(b, 21, 0, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	return append(b, make([]byte, 32)...)
}
