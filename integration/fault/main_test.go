// Package fault holds fault-injection tests of the daemon's enclave
// transport, run against real processes: the mock enclave killed and
// restarted under load, and a hostile enclave that answers with oversized,
// garbage or mistyped replies or never answers.
package fault

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// key is a stored key the tests sign with.
type key struct {
	pkh string
	pk  tezos.PublicKey
}

// writeKeys creates keys of the given types, seals them with the local KMS
// whose key file is kmsPath (created if absent) and stores them in the
// Signatory-format key file at keysPath.
func writeKeys(t *testing.T, kmsPath, keysPath string, types ...tezos.KeyType) []key {
	t.Helper()
	kms, err := localstandin.New(kmsPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := file.New(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []key
	for _, kt := range types {
		pk := harness.SealKey(t, kms, st, kt)
		out = append(out, key{pkh: pk.Hash().String(), pk: pk})
	}
	return out
}

// writeConfig writes a daemon configuration using the confidentialspace
// vault at 127.0.0.1:port, the key file keysPath, in-memory watermarks, and
// a policy allowing transactions and attestations for every key.
func writeConfig(t *testing.T, dir string, port int, keysPath, rpcTimeout string, keys []key) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "base_dir: %s\n", dir)
	b.WriteString("server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n")
	b.WriteString("vaults:\n  cs:\n    driver: confidentialspace\n    config:\n")
	fmt.Fprintf(&b, "      host: 127.0.0.1\n      port: \"%d\"\n", port)
	b.WriteString("      wip_provider_path: fault/wip\n      encryption_key_path: fault/kms\n")
	fmt.Fprintf(&b, "      connections: 4\n      dial_timeout: 1s\n      rpc_timeout: %s\n", rpcTimeout)
	fmt.Fprintf(&b, "      storage:\n        driver: file\n        config: %s\n", keysPath)
	b.WriteString("watermark:\n  driver: mem\n")
	b.WriteString("tezos:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s:\n    allow:\n      generic: [transaction]\n      attestation:\n", k.pkh)
	}
	path := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startEnclave starts sigil-enclave on 127.0.0.1:port with the local KMS
// key file and returns it with the time its "listening on" line was seen.
func startEnclave(t *testing.T, bin string, port int, kmsPath string, extra ...string) (*harness.Process, time.Time) {
	t.Helper()
	e := harness.StartEnclave(t, harness.EnclaveOptions{Binary: bin, Port: port, KMSKeyFile: kmsPath, Args: extra})
	return e.Process, e.Listening
}

// daemon is a running `sigil serve`, started and ready (keys loaded).
type daemon struct {
	proc    *harness.Process
	api     string // http://host:port
	utility string
}

func startDaemon(t *testing.T, bin, cfg string) *daemon {
	t.Helper()
	h := harness.StartDaemon(t, harness.DaemonOptions{Binary: bin, Config: cfg})
	return &daemon{proc: h.Process, api: h.API, utility: h.Utility}
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// signResult is the outcome of one POST /keys/{pkh}.
type signResult struct {
	status int
	sig    string // on 200
	msg    string // the error message otherwise
	err    error  // transport error (no HTTP response)
}

// sign posts msg for pkh. An error body not in Signatory's shape leaves msg
// empty, which callers treat as a failure.
func sign(c *http.Client, api, pkh string, msg []byte) signResult {
	r := harness.PostSign(c, api+"/keys/"+pkh, msg)
	return signResult{status: r.Status, sig: r.Signature, msg: r.Message, err: r.Err}
}

// verify checks a base58 signature returned for msg by pk.
func verify(pk tezos.PublicKey, msg []byte, sig string) error {
	s, err := tezos.ParseSignature(sig)
	if err != nil {
		return err
	}
	return pk.Verify(msg, s, tezos.SignVersionLatest)
}

// getStatus returns the status of GET url ("" body ignored) or an error.
func getStatus(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(raw), nil
}

// transaction is the Taquito-forged generic transaction the load tool sends.
var transaction = mustHex(loadgen.GenericTransactionHex)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// vmRSS returns the resident set size of process pid in KiB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", sc.Text(), err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
