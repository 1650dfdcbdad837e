// Package adversarial is the standing adversarial suite of the daemon: each
// test reproduces one finding of an adversarial review against real
// processes — `sigil serve` and the mock enclave — and asserts the fixed
// behaviour. Issue #10 (adversarial_test.go): unset variables refused,
// bounded metric series and echoes, version-aware replay, signals, strict
// state files, truthful health, idle connections closed. Issue #18, nothing
// silent, round 2: restricting settings that resolve to empty, set-but-empty
// variables, alias bombs and type errors (config_test.go); the state
// directory, a DynamoDB table re-created empty and lost watermarks against
// the witness (state_test.go); health that lied (health_test.go); trickling
// connections and login floods (abuse_test.go); and the smaller findings
// (smaller_test.go).
package adversarial

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// env is one test's enclave, base directory and binaries.
type env struct {
	t        *testing.T
	sigil    string
	enclave  *harness.Enclave
	encPort  int
	kmsPath  string
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
	e.kmsPath = filepath.Join(e.dir, "kms.key")
	e.keysPath = filepath.Join(e.dir, "keys.json")
	e.startEnclave(e.kmsPath)
	return e
}

// startEnclave (re)starts the mock enclave with the local KMS key file.
func (e *env) startEnclave(kmsPath string) {
	e.t.Helper()
	e.enclave = harness.StartEnclave(e.t, harness.EnclaveOptions{Port: e.encPort, KMSKeyFile: kmsPath})
}

// vaultYAML is the vault section pointing at the test's enclave and key file.
func (e *env) vaultYAML() string {
	return fmt.Sprintf(`vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: "%d"
      wip_provider_path: adversarial/wip
      encryption_key_path: adversarial/kms
      dial_timeout: 1s
      rpc_timeout: 5s
      storage:
        driver: file
        config: %s
`, e.encPort, e.keysPath)
}

// writeConfig writes base_dir, listeners on free loopback ports, the vault
// section and extra (server extensions, tezos policies, …).
func (e *env) writeConfig(extra string) string {
	e.t.Helper()
	cfg := fmt.Sprintf("base_dir: %s\n%s%s", e.dir, e.vaultYAML(), extra)
	if !strings.Contains(extra, "server:") {
		cfg += "server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n"
	}
	p := filepath.Join(e.dir, "sigil.yaml")
	require.NoError(e.t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

// replaceInFile replaces the first old in the file at path with new,
// failing the test when old is not there.
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(data), old)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600))
}

// generate creates a key of type t in the enclave through the CLI.
func (e *env) generate(kt string) string {
	e.t.Helper()
	cfg := e.writeConfig("")
	out, err := exec.Command(e.sigil, "-c", cfg, "--timeout", "20s", "generate", "-t", kt).CombinedOutput()
	require.NoError(e.t, err, string(out))
	lines := strings.Fields(strings.TrimSpace(string(out)))
	pkh := lines[len(lines)-1]
	_, err = tezos.ParsePublicKeyHash(pkh)
	require.NoError(e.t, err, string(out))
	return pkh
}

// policy allows generic transactions and every consensus kind for pkhs.
func policy(pkhs ...string) string {
	var b strings.Builder
	b.WriteString("tezos:\n")
	for _, p := range pkhs {
		fmt.Fprintf(&b, "  %s:\n    allow:\n      generic: [transaction]\n      block:\n      preattestation:\n      attestation:\n", p)
	}
	return b.String()
}

// daemon is a running `sigil serve`.
type daemon struct {
	proc    *harness.Process
	api     string
	utility string
}

// start runs `sigil serve -c cfg`; with waitReady it waits for the keys to
// load, else only for the listeners.
func (e *env) start(cfg string, waitReady bool) *daemon {
	e.t.Helper()
	return e.startEnv(cfg, waitReady)
}

// startEnv is start with extra environment variables (NAME=value).
func (e *env) startEnv(cfg string, waitReady bool, extraEnv ...string) *daemon {
	e.t.Helper()
	h := harness.StartDaemon(e.t, harness.DaemonOptions{Binary: e.sigil, Config: cfg, Listening: !waitReady, Env: extraEnv})
	return &daemon{proc: h.Process, api: h.API, utility: h.Utility}
}

// refusesToStart runs `sigil serve -c cfg` and returns its output, failing
// the test unless it exits with an error within 20 s.
func (e *env) refusesToStart(cfg string, extraEnv ...string) string {
	e.t.Helper()
	return e.refuses(e.t, cfg, extraEnv...)
}

// refuses is refusesToStart failing t (a subtest) rather than the
// environment's test.
func (e *env) refuses(t *testing.T, cfg string, extraEnv ...string) string {
	t.Helper()
	return e.refusesArgs(t, []string{"serve", "-c", cfg}, extraEnv...)
}

// refusesArgs runs sigil with args and returns its output, failing t
// unless it exits with an error within 20 s.
func (e *env) refusesArgs(t *testing.T, args []string, extraEnv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.sigil, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "sigil %s started (or succeeded) where it must refuse:\n%s", strings.Join(args, " "), out)
	require.NoError(t, ctx.Err(), "sigil %s neither started nor exited:\n%s", strings.Join(args, " "), out)
	return string(out)
}

var client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}

// result is one HTTP exchange.
type result struct {
	status int
	body   string
	sig    string
	msg    string
}

func post(t *testing.T, url string, msg []byte) result {
	t.Helper()
	return postRaw(t, url, strconv.Quote(hex.EncodeToString(msg)))
}

func postRaw(t *testing.T, url, body string) result {
	t.Helper()
	r := harness.PostSignBody(client, url, body)
	require.NoError(t, r.Err)
	return result{status: r.Status, body: r.Body, sig: r.Signature, msg: r.Message}
}

func get(t *testing.T, url string) result {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	require.NoError(t, err)
	return result{status: resp.StatusCode, body: string(raw)}
}

// eventually polls cond every 100 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mainnet is the chain id NetXdQprcVkpaWU.
var mainnet = []byte{0x7a, 0x06, 0xa7, 0x70}

// attestation builds a consensus attestation: tag 21 (with a slot) for
// tz1–tz3 keys, or the tz4-only tag 41 when tz4 is set.
func attestation(level, round int32, payload byte, tz4 bool) []byte {
	b := append([]byte{0x13}, mainnet...)
	b = append(b, make([]byte, 32)...) // branch
	if tz4 {
		b = append(b, 41)
	} else {
		b = append(b, 21, 0, 1)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	ph := make([]byte, 32)
	ph[0] = payload
	return append(b, ph...)
}

// seriesCount counts the sample lines of a /metrics body.
func seriesCount(body string) int {
	n := 0
	for _, l := range strings.Split(body, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}
