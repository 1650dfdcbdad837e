// Package e2e holds Sigil's end-to-end test: the real `sigil` and
// `sigil-enclave` binaries run as separate processes (the enclave with the
// local KMS stand-in, and again in its production mode --kms gcp against a
// fake Security Token Service and Cloud KMS; the CLI; the daemon), and
// Taquito, driven through node, is the independent client that forges
// operations, asks the daemon for signatures over the remote-signer HTTP API
// and verifies them.
package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms/gcpkmstest"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/integration/taquito"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Fixed operation fields: any well-formed values will do, they only have to
// forge. The branch is the genesis block hash.
const (
	branch      = "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2"
	destination = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
	// unknownKey is a valid address that the daemon does not hold.
	unknownKey = "tz1burnburnburnburnburnburnburjAYjjX"
)

// key is one of the six keys the test puts into the enclave.
type key struct {
	pkh      string
	typ      string // as `sigil list` prints it
	sigPfx   string // prefix of its signatures
	imported bool
}

// signResult is what the Taquito script reports for one key.
type signResult struct {
	PKH               string `json:"pkh"`
	PK                string `json:"pk"`
	PKHFromPK         string `json:"pkhFromPk"`
	Forged            string `json:"forged"`
	Sig               string `json:"sig"`
	Via               string `json:"via"`
	RemoteSignerError string `json:"remoteSignerError"`
	HTTPStatus        int    `json:"httpStatus"`
	Verified          bool   `json:"verified"`
	TamperedVerified  bool   `json:"tamperedVerified"`
	PopStatus         int    `json:"popStatus"`
	Pop               string `json:"pop"`
	PKLen             int    `json:"pkLen"`
	PopVerified       bool   `json:"popVerified"`
	PopAsPlain        bool   `json:"popAsPlainVerified"`
}

// oracleScript derives, with Taquito's InMemorySigner, the Tezos secret key
// strings and addresses of the two keys the test imports.
const oracleScript = `
const { InMemorySigner } = require('@taquito/signer');
const { b58Encode, PrefixV2, hex2buf } = require('@taquito/utils');
const edsk = b58Encode(hex2buf(input.edSeed), PrefixV2.Ed25519Seed);
const p2sk = b58Encode(hex2buf(input.p256Scalar), PrefixV2.P256SecretKey);
const ed = new InMemorySigner(edsk);
const p2 = new InMemorySigner(p2sk);
return {
  edsk,
  p2sk,
  edPkh: await ed.publicKeyHash(),
  edPk: await ed.publicKey(),
  p2Pkh: await p2.publicKeyHash(),
  p2Pk: await p2.publicKey(),
};`

// signScript forges a transaction from every key with local-forging, has it
// signed by the daemon through @taquito/remote-signer, and verifies the
// signature (and the tz4 key's proof of possession) with @taquito/utils.
// RemoteSigner 21 cannot handle tz4 keys (see the report in signAll): for
// them the signature is also fetched with a plain POST, so that the
// verification with @taquito/utils 25 still applies.
const signScript = `
const { RemoteSigner } = require('@taquito/remote-signer');
const { LocalForger } = require('@taquito/local-forging');
const { verifySignature, getPkhfromPk, b58DecodeAndCheckPrefix } = require('@taquito/utils');
const forger = new LocalForger();
const out = [];
for (const k of input.keys) {
  const r = { pkh: k.pkh };
  const rs = new RemoteSigner(k.pkh, input.url);
  r.pk = await rs.publicKey();
  r.pkhFromPk = getPkhfromPk(r.pk);
  r.forged = await forger.forge({
    branch: input.branch,
    contents: [{
      kind: 'transaction', source: k.pkh, fee: '1420', counter: String(k.counter),
      gas_limit: '1521', storage_limit: '0', amount: '1000000', destination: input.destination,
    }],
  });
  const msg = '03' + r.forged;
  try {
    const s = await rs.sign(r.forged, new Uint8Array([3]));
    r.sig = s.prefixSig;
    r.via = 'remote-signer';
  } catch (e) {
    r.remoteSignerError = String((e && e.message) || e);
    const resp = await fetch(input.url + '/keys/' + k.pkh, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(msg),
    });
    r.httpStatus = resp.status;
    const body = await resp.json();
    r.sig = body.signature || '';
    r.via = 'http';
  }
  r.verified = r.sig ? verifySignature(msg, r.pk, r.sig) : false;
  const last = msg.slice(-2) === '00' ? '01' : '00';
  r.tamperedVerified = r.sig ? verifySignature(msg.slice(0, -2) + last, r.pk, r.sig) : false;
  if (k.pop) {
    const resp = await fetch(input.url + '/bls_prove_possession/' + k.pkh);
    r.popStatus = resp.status;
    const body = await resp.json();
    r.pop = body.bls_prove_possession || '';
    const [pkBytes] = b58DecodeAndCheckPrefix(r.pk);
    r.pkLen = pkBytes.length;
    r.popVerified = r.pop ? verifySignature(pkBytes, r.pk, r.pop, undefined, true) : false;
    r.popAsPlainVerified = r.pop ? verifySignature(pkBytes, r.pk, r.pop) : false;
  }
  out.push(r);
}
return out;`

// enclaveMode is how the test runs sigil-enclave: its extra arguments and
// the Initialize values the daemon is configured with.
type enclaveMode struct {
	args      func(t *testing.T, dir string) []string
	wip, key  string
	checkBlob func(t *testing.T, pkh string, blob []byte) // optional
}

// TestEndToEnd runs the scenario against the enclave with the local KMS
// stand-in, and against the production mode (--kms gcp) with a fake
// Security Token Service and a fake Cloud KMS on loopback.
func TestEndToEnd(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		runEndToEnd(t, enclaveMode{
			args: func(t *testing.T, dir string) []string {
				return []string{"--kms", "local", "--kms-key-file", filepath.Join(dir, "kms.key")}
			},
			wip: "x", key: "y",
		})
	})
	t.Run("gcp", func(t *testing.T) {
		const (
			wip = "projects/271828/locations/global/workloadIdentityPools/e2e/providers/attestation"
			key = "projects/e2e/locations/global/keyRings/sigil/cryptoKeys/enclave"
		)
		var kms *gcpkmstest.KMS
		runEndToEnd(t, enclaveMode{
			args: func(t *testing.T, dir string) []string {
				tokenFile := filepath.Join(dir, "attestation_token")
				subject := gcpkmstest.WriteTokenFile(t, tokenFile)
				sts := gcpkmstest.NewSTS(t, gcpkms.AudiencePrefix+wip, subject, time.Hour)
				kms = gcpkmstest.NewKMS(t, sts.Valid)
				kms.AddKey(key)
				return []string{"--kms", "gcp", "--gcp-token-file", tokenFile, "--gcp-sts-url", sts.URL,
					"--gcp-kms-endpoint", kms.Addr, "--gcp-kms-insecure"}
			},
			wip: wip, key: key,
			checkBlob: func(t *testing.T, pkh string, blob []byte) {
				if _, err := kms.Unseal(key, blob); err != nil {
					t.Errorf("key file: the blob of %s is not Cloud KMS ciphertext under %s: %v", pkh, key, err)
				}
			},
		})
	})
}

func runEndToEnd(t *testing.T, mode enclaveMode) {
	start := time.Now()
	defer func() {
		t.Logf("end-to-end wall time (builds included): %v", time.Since(start).Round(time.Millisecond))
	}()

	sigil := harness.BuildBinary(t, "./cmd/sigil")
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	taquito.NodeModules(t)
	t.Logf("binaries built and Taquito ready after %v", time.Since(start).Round(time.Millisecond))

	dir := t.TempDir()
	baseDir := filepath.Join(dir, "base")
	cfgPath := filepath.Join(dir, "sigil.yaml")
	keyFile := filepath.Join(baseDir, "confidential_space_keys.json")

	// The mock enclave, a separate process with the local AES-GCM KMS.
	enclave := harness.StartEnclave(t, harness.EnclaveOptions{Binary: enclaveBin, Args: mode.args(t, dir)})
	enclavePort := strconv.Itoa(enclave.Port)

	// Configuration without policy for the CLI (no storage section: the
	// file store at ${BASE_DIR}/confidential_space_keys.json is the default).
	writeConfig(t, cfgPath, baseDir, enclavePort, mode, "", "")

	// Generate one key of each type inside the enclave.
	var keys []key
	for _, g := range []struct{ typ, list, pfx string }{
		{"tz1", "ed25519", "edsig"}, {"tz2", "secp256k1", "spsig1"}, {"tz3", "p256", "p2sig"}, {"tz4", "bls", "BLsig"},
	} {
		out, _ := runCLI(t, sigil, "", "-c", cfgPath, "generate", "-v", "cs", "-t", g.typ)
		pkh := strings.TrimSpace(out)
		if !regexp.MustCompile(`^` + g.typ + `[1-9A-HJ-NP-Za-km-z]{33}$`).MatchString(pkh) {
			t.Fatalf("generate -t %s printed %q, want one %s address", g.typ, out, g.typ)
		}
		keys = append(keys, key{pkh: pkh, typ: g.list, sigPfx: g.pfx})
	}

	// Two plain keys to import: a P-256 key as PKCS#8 PEM (from a file) and
	// an ed25519 key as a Tezos edsk string (from standard input). Taquito
	// derives their secret key strings and expected addresses.
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := p256.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	pemPath := filepath.Join(dir, "p256.pem")
	if err := os.WriteFile(pemPath, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	var oracle struct {
		Edsk  string `json:"edsk"`
		P2sk  string `json:"p2sk"`
		EdPkh string `json:"edPkh"`
		EdPk  string `json:"edPk"`
		P2Pkh string `json:"p2Pkh"`
		P2Pk  string `json:"p2Pk"`
	}
	taquito.Run(t, oracleScript, map[string]string{"edSeed": hex.EncodeToString(seed), "p256Scalar": hex.EncodeToString(scalar)}, &oracle)
	if !strings.HasPrefix(oracle.Edsk, "edsk") || !strings.HasPrefix(oracle.EdPkh, "tz1") || !strings.HasPrefix(oracle.P2Pkh, "tz3") {
		t.Fatalf("Taquito oracle returned unexpected key strings (addresses %q, %q)", oracle.EdPkh, oracle.P2Pkh)
	}
	// Strings that must never appear in any output.
	secrets := map[string]string{
		"edsk":              oracle.Edsk,
		"ed25519 seed hex":  hex.EncodeToString(seed),
		"p2sk":              oracle.P2sk,
		"P-256 scalar hex":  hex.EncodeToString(scalar),
		"PEM body (line 2)": strings.Split(string(pemData), "\n")[1],
	}
	checkNoSecret := func(what, text string) {
		t.Helper()
		for name, s := range secrets {
			if strings.Contains(text, s) || strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
				t.Errorf("the %s appears in %s", name, what)
			}
		}
	}

	out, errOut := runCLI(t, sigil, "", "-c", cfgPath, "import", "-v", "cs", pemPath)
	checkNoSecret("the output of `import FILE`", out+errOut)
	if got := strings.TrimSpace(out); got != oracle.P2Pkh {
		t.Fatalf("import of the P-256 PEM printed %q, want Taquito's address %s", got, oracle.P2Pkh)
	}
	keys = append(keys, key{pkh: oracle.P2Pkh, typ: "p256", sigPfx: "p2sig", imported: true})
	out, errOut = runCLI(t, sigil, oracle.Edsk+"\n", "-c", cfgPath, "import", "-v", "cs")
	checkNoSecret("the output of `import` from standard input", out+errOut)
	if got := strings.TrimSpace(out); got != oracle.EdPkh {
		t.Fatalf("import of the edsk key printed %q, want Taquito's address %s", got, oracle.EdPkh)
	}
	keys = append(keys, key{pkh: oracle.EdPkh, typ: "ed25519", sigPfx: "edsig", imported: true})

	// Two keys encrypted as octez-client writes them (edesk…, spesk…), from
	// the vectors whose addresses Taquito's InMemorySigner computes: one
	// with --password, one with the password on standard input.
	for i, v := range encryptedVectors(t, "ed25519", "secp256k1") {
		secrets[v.Type+" encrypted key"] = v.Encrypted
		secrets[v.Type+" decrypted key"] = v.SecretKey
		secrets[v.Type+" passphrase"] = v.Passphrase
		args, stdin := []string{"-c", cfgPath, "import", "--password", v.Passphrase, v.Encrypted}, ""
		if i == 1 {
			args, stdin = []string{"-c", cfgPath, "import", v.Encrypted}, v.Passphrase+"\n"
		}
		out, errOut = runCLI(t, sigil, stdin, args...)
		checkNoSecret("the output of `import` of an encrypted key", out+errOut)
		if got := strings.TrimSpace(out); got != v.PublicKeyHash {
			t.Fatalf("import of the %s encrypted key printed %q, want Taquito's address %s", v.Type, got, v.PublicKeyHash)
		}
		pfx := map[string]string{"ed25519": "edsig", "secp256k1": "spsig1"}[v.Type]
		keys = append(keys, key{pkh: v.PublicKeyHash, typ: v.Type, sigPfx: pfx, imported: true})
	}

	// sigil list: the six keys with their types.
	out, errOut = runCLI(t, sigil, "", "-c", cfgPath, "list")
	checkNoSecret("the output of `list`", out+errOut)
	listed := parseList(t, out)
	if len(listed) != len(keys) {
		t.Fatalf("sigil list shows %d keys, want %d:\n%s", len(listed), len(keys), out)
	}
	for _, k := range keys {
		row, ok := listed[k.pkh]
		if !ok {
			t.Fatalf("sigil list lacks %s:\n%s", k.pkh, out)
		}
		if row.typ != k.typ || row.vault != "cs" {
			t.Errorf("sigil list: %s has type %q vault %q, want %q and cs", k.pkh, row.typ, row.vault, k.typ)
		}
	}
	if listed[oracle.EdPkh].pk != oracle.EdPk || listed[oracle.P2Pkh].pk != oracle.P2Pk {
		t.Errorf("sigil list shows public keys %s and %s for the imported keys, Taquito derives %s and %s",
			listed[oracle.EdPkh].pk, listed[oracle.P2Pkh].pk, oracle.EdPk, oracle.P2Pk)
	}
	checkKeyFile(t, keyFile, keys, [][]byte{seed, scalar}, mode.checkBlob)

	// The policy: every key may sign transactions; the tz4 key may prove
	// possession.
	var policy strings.Builder
	policy.WriteString("tezos:\n")
	for _, k := range keys {
		fmt.Fprintf(&policy, "  %s:\n    allow:\n      generic: [transaction, reveal, delegation]\n", k.pkh)
		if k.typ == "bls" {
			policy.WriteString("    allow_proof_of_possession: true\n")
		}
	}
	writeConfig(t, cfgPath, baseDir, enclavePort, mode, "", policy.String())

	d1 := startDaemon(t, sigil, cfgPath, len(keys))
	first := signAll(t, d1, keys, listed)

	// Negative checks over plain HTTP.
	tz1 := keys[0].pkh
	forgedTz1 := first[tz1].Forged
	expectStatus(t, "GET", d1.url+"/keys/"+unknownKey, "", http.StatusNotFound)
	expectStatus(t, "POST", d1.url+"/keys/"+unknownKey, `"03`+forgedTz1+`"`, http.StatusNotFound)
	expectStatus(t, "POST", d1.url+"/keys/"+tz1, `"03zz"`, http.StatusBadRequest)
	expectStatus(t, "POST", d1.url+"/keys/"+tz1, `"03`+forgedTz1[:len(forgedTz1)-1]+`"`, http.StatusBadRequest) // odd length
	expectStatus(t, "GET", d1.url+"/bls_prove_possession/"+tz1, "", http.StatusBadRequest)                      // not a BLS key

	// A daemon whose policy lists the keys without `transaction` (and the
	// tz4 key without proof of possession) refuses with 403. It is a second
	// daemon on the same enclave and key file (named explicitly), so the six
	// keys stay as they are; it has its own base directory because the
	// watermark directory is locked by the first daemon.
	var restricted strings.Builder
	restricted.WriteString("tezos:\n")
	for _, k := range keys {
		fmt.Fprintf(&restricted, "  %s:\n    allow:\n      generic: [reveal, delegation]\n", k.pkh)
	}
	restrictedCfg := filepath.Join(dir, "restricted.yaml")
	writeConfig(t, restrictedCfg, filepath.Join(dir, "restricted-base"), enclavePort, mode,
		"      storage:\n        driver: file\n        config: "+keyFile+"\n", restricted.String())
	d3 := startDaemon(t, sigil, restrictedCfg, len(keys))
	for _, k := range keys {
		expectStatus(t, "POST", d3.url+"/keys/"+k.pkh, `"03`+first[k.pkh].Forged+`"`, http.StatusForbidden)
	}
	expectStatus(t, "GET", d3.url+"/bls_prove_possession/"+keys[3].pkh, "", http.StatusForbidden)
	d3.proc.Stop()
	checkNoSecret("the restricted daemon's log", d3.proc.Log())

	// Restart: every key comes back from the file store and signs the same
	// bytes to the same (deterministic) signatures.
	d1.proc.Stop()
	if err := d1.proc.Wait(); err != nil {
		t.Errorf("the daemon did not exit cleanly on SIGTERM: %v", err)
	}
	checkNoSecret("the daemon's log", d1.proc.Log())
	d2 := startDaemon(t, sigil, cfgPath, len(keys))
	second := signAll(t, d2, keys, listed)
	for _, k := range keys {
		a, b := first[k.pkh], second[k.pkh]
		if a.PK != b.PK || a.Forged != b.Forged {
			t.Errorf("%s: public key or forged bytes changed across the restart", k.pkh)
		}
		if a.Sig != b.Sig {
			t.Errorf("%s: signature of the same bytes changed across the restart (%s, then %s): not the same key?", k.pkh, a.Sig, b.Sig)
		}
		if k.typ == "bls" && a.Pop != b.Pop {
			t.Errorf("%s: proof of possession changed across the restart", k.pkh)
		}
	}
	checkKeyFile(t, keyFile, keys, [][]byte{seed, scalar}, mode.checkBlob)
	d2.proc.Stop()
	checkNoSecret("the restarted daemon's log", d2.proc.Log())
}

// encryptedVector is one of domain/tezos/testdata/encrypted_keys.json (made
// by tools/taquito/encrypted-key-vectors.js, decrypted by Taquito).
type encryptedVector struct {
	Type          string `json:"type"`
	Passphrase    string `json:"passphrase"`
	Encrypted     string `json:"encrypted"`
	SecretKey     string `json:"secret_key"`
	PublicKeyHash string `json:"public_key_hash"`
}

// encryptedVectors returns one vector of each type asked for, with a
// passphrase long enough to be looked for in outputs.
func encryptedVectors(t *testing.T, types ...string) []encryptedVector {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "domain/tezos/testdata/encrypted_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all []encryptedVector
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	var out []encryptedVector
	for _, typ := range types {
		i := slices.IndexFunc(all, func(v encryptedVector) bool { return v.Type == typ && len(v.Passphrase) >= 12 })
		if i < 0 {
			t.Fatalf("no %s vector", typ)
		}
		out = append(out, all[i])
	}
	return out
}

// daemon is a running `sigil serve`.
type daemon struct {
	proc *harness.Process
	url  string
}

// startDaemon starts `sigil serve -c cfg`, waits for its listening line and
// checks that it loaded wantKeys keys and that /healthz answers 200.
func startDaemon(t *testing.T, bin, cfg string, wantKeys int) *daemon {
	t.Helper()
	h := harness.StartDaemon(t, harness.DaemonOptions{Name: "sigil-serve", Binary: bin, Args: []string{"-c", cfg, "serve"}})
	if h.Keys != wantKeys {
		t.Errorf("daemon started with keys=%d, want %d", h.Keys, wantKeys)
	}
	expectStatus(t, "GET", h.Utility+"/healthz", "", http.StatusOK)
	return &daemon{proc: h.Process, url: h.API}
}

// signAll runs signScript against the daemon for every key and checks the
// results; it returns them by address.
func signAll(t *testing.T, d *daemon, keys []key, listed map[string]listRow) map[string]signResult {
	t.Helper()
	type in struct {
		PKH     string `json:"pkh"`
		Counter int    `json:"counter"`
		Pop     bool   `json:"pop"`
	}
	input := map[string]any{"url": d.url, "branch": branch, "destination": destination}
	var ks []in
	for i, k := range keys {
		ks = append(ks, in{PKH: k.pkh, Counter: 100 + i, Pop: k.typ == "bls"})
	}
	input["keys"] = ks
	var results []signResult
	start := time.Now()
	taquito.Run(t, signScript, input, &results)
	t.Logf("Taquito forged, signed and verified %d operations in %v", len(results), time.Since(start).Round(time.Millisecond))
	if len(results) != len(keys) {
		t.Fatalf("Taquito returned %d results for %d keys", len(results), len(keys))
	}
	byPKH := map[string]signResult{}
	for i, k := range keys {
		r := results[i]
		byPKH[k.pkh] = r
		if r.PKH != k.pkh {
			t.Fatalf("result %d is for %s, want %s", i, r.PKH, k.pkh)
		}
		if r.PK != listed[k.pkh].pk {
			t.Errorf("%s: RemoteSigner.publicKey() = %s, sigil list printed %s", k.pkh, r.PK, listed[k.pkh].pk)
		}
		if r.PKHFromPK != k.pkh {
			t.Errorf("%s: Taquito hashes its public key %s to %s", k.pkh, r.PK, r.PKHFromPK)
		}
		if k.typ == "bls" {
			// @taquito/remote-signer 21 cannot verify tz4 keys itself
			// (RemoteSigner.verifyPublicKey has no entry for "BL"); the
			// script then fetched the signature with a plain POST.
			if r.Via == "http" {
				t.Logf("%s: @taquito/remote-signer 21 failed (%s); signature fetched over HTTP (status %d) instead", k.pkh, r.RemoteSignerError, r.HTTPStatus)
				if r.HTTPStatus != http.StatusOK {
					t.Errorf("%s: POST /keys answered %d", k.pkh, r.HTTPStatus)
				}
			}
		} else if r.Via != "remote-signer" {
			t.Errorf("%s: @taquito/remote-signer failed to sign: %s", k.pkh, r.RemoteSignerError)
		}
		if !strings.HasPrefix(r.Sig, k.sigPfx) {
			t.Errorf("%s: signature %q does not start with %s", k.pkh, r.Sig, k.sigPfx)
		}
		if !r.Verified {
			t.Errorf("%s: @taquito/utils verifySignature rejects the daemon's signature %s", k.pkh, r.Sig)
		}
		if r.TamperedVerified {
			t.Errorf("%s: the signature also verifies over altered bytes: the check is vacuous", k.pkh)
		}
		if k.typ == "bls" {
			if r.PopStatus != http.StatusOK || !strings.HasPrefix(r.Pop, "BLsig") {
				t.Errorf("%s: GET /bls_prove_possession: status %d, proof %q", k.pkh, r.PopStatus, r.Pop)
			}
			if r.PKLen != 48 {
				t.Errorf("%s: BLS public key is %d bytes, want 48", k.pkh, r.PKLen)
			}
			if !r.PopVerified {
				t.Errorf("%s: @taquito/utils rejects the proof of possession %s", k.pkh, r.Pop)
			}
			if r.PopAsPlain {
				t.Errorf("%s: the proof of possession also verifies as a plain signature (wrong DST?)", k.pkh)
			}
		}
	}
	return byPKH
}

// runCLI runs the sigil binary with args (and stdin) and returns its
// standard output and error; a non-zero exit fails the test.
func runCLI(t *testing.T, bin, stdin string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sigil %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args[2:], " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// writeConfig writes a configuration with the vault "cs" on the enclave;
// storage, if not empty, is the vault's storage section (indented for it).
func writeConfig(t *testing.T, path, baseDir, enclavePort string, mode enclaveMode, storage, tezos string) {
	t.Helper()
	cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: %s
      wip_provider_path: %s
      encryption_key_path: %s
%s%s`, baseDir, enclavePort, mode.wip, mode.key, storage, tezos)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

type listRow struct{ pk, vault, typ string }

// parseList reads the table `sigil list` prints.
func parseList(t *testing.T, out string) map[string]listRow {
	t.Helper()
	types := map[string]string{"edpk": "ed25519", "sppk": "secp256k1", "p2pk": "p256", "BLpk": "bls"}
	rows := map[string]listRow{}
	for _, block := range strings.Split(strings.TrimSpace(out), "\n\n") {
		fields := map[string]string{}
		for _, l := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				t.Fatalf("sigil list: malformed line %q", l)
			}
			fields[k] = strings.TrimSpace(v)
		}
		pkh, pk := fields["Public Key Hash"], fields["Public Key"]
		if pkh == "" || len(pk) < 4 || types[pk[:4]] == "" {
			t.Fatalf("sigil list: malformed entry:\n%s", block)
		}
		rows[pkh] = listRow{pk: pk, vault: fields["Vault"], typ: types[pk[:4]]}
	}
	return rows
}

// checkKeyFile checks the key file: mode 0600, exactly one entry per key,
// and no plain key material in the sealed blobs.
func checkKeyFile(t *testing.T, path string, keys []key, plain [][]byte, checkBlob func(t *testing.T, pkh string, blob []byte)) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file %s has mode %o, want 600", path, mode)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		PKH  string `json:"public_key_hash"`
		Blob []byte `json:"encrypted_private_key"`
	}
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatalf("key file is not Signatory's JSON format: %v", err)
	}
	if len(entries) != len(keys) {
		t.Errorf("key file has %d entries, want %d", len(entries), len(keys))
	}
	var got, want []string
	for _, e := range entries {
		got = append(got, e.PKH)
		if len(e.Blob) == 0 {
			t.Errorf("key file: %s has an empty blob", e.PKH)
		}
		if checkBlob != nil {
			checkBlob(t, e.PKH, e.Blob)
		}
		for _, p := range plain {
			if bytes.Contains(e.Blob, p) {
				t.Errorf("key file: the blob of %s holds an imported key in plain text", e.PKH)
			}
		}
	}
	for _, k := range keys {
		want = append(want, k.pkh)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("key file holds %v, want %v", got, want)
	}
}

// expectStatus sends one request and checks the status; error answers must
// have Signatory's JSON error shape.
func expectStatus(t *testing.T, method, url, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Errorf("%s %s: status %d, want %d (body %s)", method, url, resp.StatusCode, want, data)
		return
	}
	if want >= 400 {
		var e []struct{ ID, Kind, Msg string }
		if err := json.Unmarshal(data, &e); err != nil || len(e) != 1 || e[0].ID != "failure" || e[0].Msg == "" {
			t.Errorf("%s %s: error body %s is not Signatory's [{id, kind, msg}] shape", method, url, data)
		}
	}
}
