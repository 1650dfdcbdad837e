package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// cliTimeout bounds one `sigil` CLI run.
const cliTimeout = 90 * time.Second

func sigilBin(t *testing.T) string { return harness.BuildBinary(t, "./cmd/sigil") }

// enclave is a running mock enclave.
type enclave struct {
	proc       *harness.Process
	host, port string
}

// startEnclave starts cmd/sigil-enclave with the local KMS stand-in keyed
// by kmsKeyFile (created if absent); enclaves given the same file open each
// other's sealed blobs.
func startEnclave(t *testing.T, kmsKeyFile string) *enclave {
	t.Helper()
	e := harness.StartEnclave(t, harness.EnclaveOptions{KMSKeyFile: kmsKeyFile})
	return &enclave{proc: e.Process, host: "127.0.0.1", port: strconv.Itoa(e.Port)}
}

// node is one daemon's configuration and base directory.
type node struct {
	t         *testing.T
	name      string
	dir, cfg  string
	env       []string
	enclave   *enclave
	storage   map[string]any // vault storage section; nil = file
	watermark map[string]any // watermark section; nil = file
	policies  map[string]map[string]any
}

func newNode(t *testing.T, name string, enc *enclave, env []string) *node {
	t.Helper()
	dir := t.TempDir()
	return &node{
		t: t, name: name, dir: dir, cfg: filepath.Join(dir, "sigil.yaml"),
		env: env, enclave: enc, policies: map[string]map[string]any{},
	}
}

func firestoreSection(project string) map[string]any {
	return map[string]any{"driver": "firestore", "config": map[string]any{"project": project, "database": "(default)"}}
}

// allow lets pkh sign the given request kinds (generic: transaction only).
func (n *node) allow(pkh string, kinds ...string) {
	allow := map[string]any{}
	for _, k := range kinds {
		if k == "generic" {
			allow[k] = []string{"transaction"}
		} else {
			allow[k] = []string{}
		}
	}
	n.policies[pkh] = map[string]any{"allow": allow}
}

func (n *node) writeConfig() {
	n.t.Helper()
	vc := map[string]any{
		"host":                n.enclave.host,
		"port":                n.enclave.port,
		"wip_provider_path":   "projects/1/locations/global/workloadIdentityPools/test/providers/test",
		"encryption_key_path": "projects/test/locations/global/keyRings/test/cryptoKeys/test",
	}
	if n.storage != nil {
		vc["storage"] = n.storage
	}
	cfg := map[string]any{
		"base_dir": n.dir,
		"server":   map[string]any{"address": "127.0.0.1:0", "utility_address": "127.0.0.1:0"},
		"vaults":   map[string]any{"cs": map[string]any{"driver": "confidentialspace", "config": vc}},
	}
	if len(n.policies) > 0 {
		cfg["tezos"] = n.policies
	}
	if n.watermark != nil {
		cfg["watermark"] = n.watermark
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(n.cfg, data, 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// cliResult is the outcome of one CLI run.
type cliResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// run runs `sigil -c CONFIG args…` with stdin and returns its outcome.
func (n *node) run(stdin string, args ...string) cliResult {
	n.t.Helper()
	n.writeConfig()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sigilBin(n.t), append([]string{"-c", n.cfg}, args...)...)
	cmd.Env = append(os.Environ(), n.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	res := cliResult{stdout: o.String(), stderr: e.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		n.t.Fatalf("%s: sigil %v: %v", n.name, args, err)
	}
	if ctx.Err() != nil {
		n.t.Fatalf("%s: sigil %v did not finish in %v\nstderr: %s", n.name, args, cliTimeout, res.stderr)
	}
	return res
}

// mustRun runs the CLI and fails the test unless it exits 0.
func (n *node) mustRun(stdin string, args ...string) string {
	n.t.Helper()
	r := n.run(stdin, args...)
	if r.code != 0 {
		n.t.Fatalf("%s: sigil %v exited %d\nstdout: %s\nstderr: %s", n.name, args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

var addrRE = regexp.MustCompile(`^tz[1-4][1-9A-HJ-NP-Za-km-z]{33}$`)

// generate creates one key of type typ and returns its address.
func (n *node) generate(typ string) string {
	n.t.Helper()
	out := strings.TrimSpace(n.mustRun("", "generate", "-t", typ))
	if !addrRE.MatchString(out) {
		n.t.Fatalf("%s: generate -t %s printed %q, want one address", n.name, typ, out)
	}
	return out
}

// daemon is a running `sigil serve`.
type daemon struct {
	proc *harness.Process
	url  string
	keys int
}

// start writes the configuration and starts the daemon.
func (n *node) start() *daemon {
	n.t.Helper()
	n.writeConfig()
	h := harness.StartDaemon(n.t, harness.DaemonOptions{Name: "sigil-" + n.name, Binary: sigilBin(n.t), Config: n.cfg, Env: n.env})
	return &daemon{proc: h.Process, url: h.API, keys: h.Keys}
}

var client = &http.Client{Timeout: 60 * time.Second}

// publicKey returns GET /keys/{pkh}'s public key and status.
func (d *daemon) publicKey(t *testing.T, pkh string) (string, int) {
	t.Helper()
	resp, err := client.Get(d.url + "/keys/" + pkh)
	if err != nil {
		t.Fatalf("GET /keys/%s: %v", pkh, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		PublicKey string `json:"public_key"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("GET /keys/%s: %v: %s", pkh, err, body)
		}
	}
	return v.PublicKey, resp.StatusCode
}

// signResult is one answer of POST /keys/{pkh}.
type signResult struct {
	status int
	sig    string
	body   string
	err    error
}

// sign posts msg for pkh. It does not fail the test (it runs in goroutines);
// a 200 without a signature is an error.
func (d *daemon) sign(pkh string, msg []byte) signResult {
	r := harness.PostSign(client, d.url+"/keys/"+pkh, msg)
	res := signResult{status: r.Status, sig: r.Signature, body: r.Body, err: r.Err}
	if r.Err == nil && r.Status == http.StatusOK && r.Signature == "" {
		res.err = fmt.Errorf("no signature in the 200 reply %s", r.Body)
	}
	return res
}

// mustSign signs msg and fails unless the answer is 200 with a signature
// that verifies against pk.
func (d *daemon) mustSign(t *testing.T, pkh, pk string, msg []byte) string {
	t.Helper()
	r := d.sign(pkh, msg)
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("sign with %s: status %d, error %v, body %s", pkh, r.status, r.err, r.body)
	}
	verify(t, pk, msg, r.sig)
	return r.sig
}

// verify checks a base58 signature over msg with a base58 public key.
func verify(t *testing.T, pk string, msg []byte, sig string) {
	t.Helper()
	pub, err := tezos.ParsePublicKey(pk)
	if err != nil {
		t.Fatalf("public key %q: %v", pk, err)
	}
	s, err := tezos.ParseSignature(sig)
	if err != nil {
		t.Fatalf("signature %q: %v", sig, err)
	}
	if err := pub.Verify(msg, s, tezos.SignVersion2); err != nil {
		t.Fatalf("signature %s by %s does not verify: %v", sig, pk, err)
	}
}

// transactionVector returns a Taquito-forged transaction (0x03 ‖ branch ‖
// transaction) from domain/request/testdata/vectors.json.
func transactionVector(t *testing.T) []byte {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "domain", "request", "testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			Name, Hex string
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Vectors {
		if v.Name == "transaction/simple" {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0x03 {
				t.Fatalf("vector does not start with 0x03: %x", b[:1])
			}
			return b
		}
	}
	t.Fatal("transaction/simple vector not found")
	return nil
}

// mainnet is the chain id of NetXdQprcVkpaWU.
var mainnet = [4]byte{0x7a, 0x06, 0xa7, 0x70}

// attestation forges a tag-21 attestation request: 0x13 ‖ chain id ‖
// branch ‖ 21 ‖ slot ‖ level ‖ round ‖ payload hash.
func attestation(level, round int32, payload [32]byte) []byte {
	b := []byte{0x13}
	b = append(b, mainnet[:]...)
	branch := make([]byte, 32)
	for i := range branch {
		branch[i] = byte(i + 1)
	}
	b = append(b, branch...)
	b = append(b, 21)
	b = binary.BigEndian.AppendUint16(b, 7)
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	return append(b, payload[:]...)
}

func randomPayload(t *testing.T) (p [32]byte) {
	t.Helper()
	if _, err := rand.Read(p[:]); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyFileExists reports whether the base directory holds a file key store.
func (n *node) keyFileExists() bool {
	_, err := os.Stat(filepath.Join(n.dir, "confidential_space_keys.json"))
	return err == nil
}

// sharedFirestore returns the emulator shared by the package's tests.
func sharedFirestore(t *testing.T) *harness.Firestore { return harness.StartFirestore(t) }
