// Package realenclave tests sigil-enclave in its production mode (--kms
// gcp) as a process, with the daemon and CLI as processes too, against a
// fake Security Token Service and a fake Cloud KMS on loopback
// (adapters/kms/gcpkms/gcpkmstest). Only the three seams differ from a
// Confidential Space deployment: the attestation token file, the token URL
// and the KMS endpoint (plaintext gRPC to loopback).
package realenclave

import (
	"bytes"
	"context"
	"encoding/hex"
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

	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms/gcpkmstest"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const (
	wip     = "projects/314159265358/locations/global/workloadIdentityPools/sigil-pool/providers/sigil-attestation"
	keyName = "projects/sigil-test/locations/us-west1/keyRings/sigil/cryptoKeys/enclave"
)

// world is one test's fakes, binaries and directories.
type world struct {
	t          *testing.T
	dir        string
	sigil      string
	enclaveBin string
	tokenFile  string
	subject    string
	sts        *gcpkmstest.STS
	kms        *gcpkmstest.KMS
	port       int
	keysPath   string
}

func newWorld(t *testing.T, tokenTTL time.Duration) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir()}
	w.sigil = harness.BuildBinary(t, "./cmd/sigil")
	w.enclaveBin = harness.BuildBinary(t, "./cmd/sigil-enclave")
	w.tokenFile = filepath.Join(w.dir, "attestation_verifier_claims_token")
	w.subject = gcpkmstest.WriteTokenFile(t, w.tokenFile)
	w.sts = gcpkmstest.NewSTS(t, gcpkms.AudiencePrefix+wip, w.subject, tokenTTL)
	w.kms = gcpkmstest.NewKMS(t, w.sts.Valid)
	w.kms.AddKey(keyName)
	w.port = harness.FreePort(t)
	w.keysPath = filepath.Join(w.dir, "keys.json")
	return w
}

// startEnclave runs sigil-enclave --kms gcp on the world's port. The Google
// client's debug logging is switched on in its environment: nothing it
// would print (requests hold plain keys) may reach the log.
func (w *world) startEnclave() *harness.Process {
	w.t.Helper()
	return harness.StartEnclave(w.t, harness.EnclaveOptions{
		Name:   "sigil-enclave-gcp",
		Binary: w.enclaveBin,
		Port:   w.port,
		Args: []string{"--kms", "gcp", "--log-level", "debug",
			"--gcp-token-file", w.tokenFile, "--gcp-sts-url", w.sts.URL,
			"--gcp-kms-endpoint", w.kms.Addr, "--gcp-kms-insecure"},
		Env: []string{"GOOGLE_SDK_GO_LOGGING_LEVEL=debug"},
	}).Process
}

// writeConfig writes the daemon's configuration: the confidentialspace
// vault on the enclave with the given KMS key, the file key store, memory
// watermarks, and a policy allowing generic transactions (and proofs of
// possession) for the listed keys.
func (w *world) writeConfig(name, encryptionKey string, keys []string) string {
	w.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "base_dir: %s\n", filepath.Join(w.dir, "base-"+name))
	b.WriteString("server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n")
	b.WriteString("vaults:\n  cs:\n    driver: confidentialspace\n    config:\n")
	fmt.Fprintf(&b, "      host: 127.0.0.1\n      port: \"%d\"\n", w.port)
	fmt.Fprintf(&b, "      wip_provider_path: %s\n      encryption_key_path: %s\n", wip, encryptionKey)
	b.WriteString("      connections: 2\n      dial_timeout: 1s\n      rpc_timeout: 15s\n")
	fmt.Fprintf(&b, "      storage:\n        driver: file\n        config: %s\n", w.keysPath)
	b.WriteString("watermark:\n  driver: mem\n")
	if len(keys) > 0 {
		b.WriteString("tezos:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s:\n    allow:\n      generic: [transaction]\n    allow_proof_of_possession: true\n", k)
		}
	}
	path := filepath.Join(w.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// cli runs `sigil ARGS` with stdin and returns stdout, stderr and the exit
// error.
func (w *world) cli(stdin string, args ...string) (string, string, error) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.sigil, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (w *world) mustCLI(stdin string, args ...string) string {
	w.t.Helper()
	out, errOut, err := w.cli(stdin, args...)
	if err != nil {
		w.t.Fatalf("sigil %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// storedKeys reads the key file: address → sealed blob.
func (w *world) storedKeys() map[string][]byte {
	w.t.Helper()
	data, err := os.ReadFile(w.keysPath)
	if os.IsNotExist(err) {
		return map[string][]byte{}
	}
	if err != nil {
		w.t.Fatal(err)
	}
	var entries []struct {
		PKH  string `json:"public_key_hash"`
		Blob []byte `json:"encrypted_private_key"`
	}
	if err := json.Unmarshal(data, &entries); err != nil {
		w.t.Fatalf("key file: %v", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if _, dup := out[e.PKH]; dup {
			w.t.Errorf("key file holds %s twice", e.PKH)
		}
		out[e.PKH] = e.Blob
	}
	return out
}

// daemon is a running `sigil serve`.
type daemon struct {
	proc         *harness.Process
	api, utility string
}

// startDaemon starts `sigil serve`; with ready it waits for every stored
// key to be loaded ("signer ready"), otherwise only for the listeners.
func (w *world) startDaemon(cfg string, ready bool) *daemon {
	w.t.Helper()
	h := harness.StartDaemon(w.t, harness.DaemonOptions{Name: "sigil-serve", Binary: w.sigil, Config: cfg, Listening: !ready})
	return &daemon{proc: h.Process, api: h.API, utility: h.Utility}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func getJSON(url string, out any) (int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %v", body, err)
		}
	}
	return resp.StatusCode, nil
}

// transaction is the Taquito-forged generic transaction of the load tool.
var transaction = func() []byte {
	b, err := hex.DecodeString(loadgen.GenericTransactionHex)
	if err != nil {
		panic(err)
	}
	return b
}()

// signAndVerify has the daemon sign msg with pkh and verifies the
// signature with pk (domain/tezos' verifiers, not the enclave); it returns
// the signature.
func (d *daemon) signAndVerify(t *testing.T, pkh string, pk tezos.PublicKey, msg []byte) string {
	t.Helper()
	out := harness.PostSign(httpClient, d.api+"/keys/"+pkh, msg)
	if out.Err != nil {
		t.Fatalf("sign with %s: %v", pkh, out.Err)
	}
	if out.Status != http.StatusOK {
		t.Fatalf("sign with %s: status %d: %s", pkh, out.Status, out.Body)
	}
	sig, err := tezos.ParseSignature(out.Signature)
	if err != nil {
		t.Fatalf("sign with %s: %s: %v", pkh, out.Body, err)
	}
	if err := pk.Verify(msg, sig, tezos.SignVersionLatest); err != nil {
		t.Fatalf("sign with %s: the signature %s does not verify: %v", pkh, out.Signature, err)
	}
	tampered := append([]byte(nil), msg...)
	tampered[len(tampered)-1] ^= 1
	if pk.Verify(tampered, sig, tezos.SignVersionLatest) == nil {
		t.Fatalf("sign with %s: the signature also verifies over other bytes: the check is vacuous", pkh)
	}
	return out.Signature
}

// publicKey fetches GET /keys/{pkh} and checks it hashes to pkh.
func (d *daemon) publicKey(t *testing.T, pkh string) tezos.PublicKey {
	t.Helper()
	var out struct {
		PublicKey string `json:"public_key"`
	}
	if st, err := getJSON(d.api+"/keys/"+pkh, &out); err != nil || st != http.StatusOK {
		t.Fatalf("GET /keys/%s: %d %v", pkh, st, err)
	}
	pk, err := tezos.ParsePublicKey(out.PublicKey)
	if err != nil {
		t.Fatalf("GET /keys/%s: %v", pkh, err)
	}
	if pk.Hash().String() != pkh {
		t.Fatalf("GET /keys/%s returned a key hashing to %s", pkh, pk.Hash())
	}
	return pk
}

// healthz returns the status of /healthz.
func (d *daemon) healthz() int {
	st, _ := getJSON(d.utility+"/healthz", nil)
	return st
}

// waitFor polls cond every 50 ms until it holds or within passes.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// noSecrets fails the test if any of secrets appears in text.
func noSecrets(t *testing.T, what, text string, secrets map[string]string) {
	t.Helper()
	lower := strings.ToLower(text)
	for name, s := range secrets {
		if s != "" && (strings.Contains(text, s) || strings.Contains(lower, strings.ToLower(s))) {
			t.Errorf("the %s appears in %s", name, what)
		}
	}
}
