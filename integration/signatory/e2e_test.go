package signatory_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// forgeScript forges, with Taquito's LocalForger, a staking transaction
// (a transaction to the sender itself calling the entrypoint stake), a
// plain transaction, and two 1,000 tez transactions that call an
// entrypoint stake elsewhere (a KT1 contract, another account) from each
// key.
const forgeScript = `
const { LocalForger } = require('@taquito/local-forging');
const forger = new LocalForger();
const out = {};
for (const k of input.keys) {
  const base = { source: k, fee: '1420', counter: '700', gas_limit: '10600', storage_limit: '300' };
  out[k] = {
    stake: await forger.forge({ branch: input.branch, contents: [{
      kind: 'transaction', ...base, amount: '6000000000', destination: k,
      parameters: { entrypoint: 'stake', value: { prim: 'Unit' } } }] }),
    transaction: await forger.forge({ branch: input.branch, contents: [{
      kind: 'transaction', ...base, amount: '1000000', destination: input.destination }] }),
    stakeToContract: await forger.forge({ branch: input.branch, contents: [{
      kind: 'transaction', ...base, amount: '1000000000', destination: input.contract,
      parameters: { entrypoint: 'stake', value: { prim: 'Unit' } } }] }),
    stakeToOther: await forger.forge({ branch: input.branch, contents: [{
      kind: 'transaction', ...base, amount: '1000000000', destination: input.destination,
      parameters: { entrypoint: 'stake', value: { prim: 'Unit' } } }] }),
  };
}
return out;`

// verifyScript checks signatures with @taquito/utils.
const verifyScript = `
const { verifySignature } = require('@taquito/utils');
return input.map((s) => verifySignature(s.msg, s.pk, s.sig));`

const (
	e2eBranch      = "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2"
	e2eDestination = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
	e2eContract    = "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXitn"
)

// TestDropInEndToEnd runs sigil-enclave (local KMS stand-in) and `sigil
// serve` as processes, with keys generated through the CLI and a policy in
// Signatory's terms: a staking transaction forged by Taquito signs under
// `generic: [stake]` and is refused (403) under `generic: [transaction]`; a
// bare key entry signs a block and an attestation and refuses a
// transaction. The traffic also makes a policy violation, a watermark
// rejection, an authentication failure (server.authorized_keys is set), a
// failed watermark write (file backend) and a vault error (the enclave is
// stopped); then every metric family of Signatory must be in /metrics with
// exactly its label names, and the series of that traffic with Signatory's
// label values.
func TestDropInEndToEnd(t *testing.T) {
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	taquito.NodeModules(t)

	dir := t.TempDir()
	baseDir := filepath.Join(dir, "base")
	cfgPath := filepath.Join(dir, "sigil.yaml")
	enclave := harness.StartEnclave(t, harness.EnclaveOptions{Binary: enclaveBin, KMSKeyFile: filepath.Join(dir, "kms.key")})
	writeConfig := func(server, extra string) {
		cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
%svaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: %d
      wip_provider_path: x
      encryption_key_path: y
      rpc_timeout: 5s
%s`, baseDir, server, enclave.Port, extra)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("", "")
	var stakeKey, txKey, bareKey string
	for _, p := range []*string{&stakeKey, &txKey, &bareKey} {
		out := runSigil(t, sigil, "-c", cfgPath, "generate", "-v", "cs", "-t", "tz1")
		*p = strings.TrimSpace(out)
		if !regexp.MustCompile(`^tz1[1-9A-HJ-NP-Za-km-z]{33}$`).MatchString(*p) {
			t.Fatalf("generate printed %q, want a tz1 address", out)
		}
	}

	client := newTestKey(t, tezos.Ed25519)
	writeConfig("  authorized_keys: ["+client.pk.String()+"]\n", fmt.Sprintf(`watermark:
  driver: file
tezos:
  %s:
    allow:
      generic: [stake]
  %s:
    allow:
      generic: [transaction]
  %s:
`, stakeKey, txKey, bareKey))
	// A directory where the watermark file of the chain `ghost` would go:
	// the file backend's write for that chain fails (an I/O error).
	if err := os.MkdirAll(filepath.Join(baseDir, "watermark_v2", ghost.String()+".json", "x"), 0o700); err != nil {
		t.Fatal(err)
	}

	d := harness.StartDaemon(t, harness.DaemonOptions{Name: "sigil-serve", Binary: sigil, Args: []string{"-c", cfgPath, "serve"}})
	if d.Keys != 3 {
		t.Fatalf("the daemon loaded %d keys, want 3:\n%s", d.Keys, d.Log())
	}
	api, utility := d.API, d.Utility

	var forged map[string]struct{ Stake, Transaction, StakeToContract, StakeToOther string }
	taquito.Run(t, forgeScript, map[string]any{"keys": []string{stakeKey, txKey, bareKey}, "branch": e2eBranch,
		"destination": e2eDestination, "contract": e2eContract}, &forged)

	type signed struct {
		msg, pk, sig string
	}
	var toVerify []signed
	pks := map[string]string{}
	for _, k := range []string{stakeKey, txKey, bareKey} {
		pks[k] = getPublicKey(t, api, k)
	}
	sign := func(what, pkh string, msg []byte, auth bool, want int) {
		t.Helper()
		status, sig, body := postSign(t, api, pkh, msg, auth, client)
		if status != want {
			t.Errorf("%s: status %d, want %d (%s)", what, status, want, body)
			return
		}
		if want == http.StatusOK {
			toVerify = append(toVerify, signed{msg: hex.EncodeToString(msg), pk: pks[pkh], sig: sig})
		}
	}
	msgOf := func(h string) []byte {
		b, err := hex.DecodeString("03" + h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Taquito's staking transaction is classified as `stake`.
	if r, err := request.Parse(msgOf(forged[stakeKey].Stake)); err != nil || !slices.Equal(r.Ops, []string{"stake"}) {
		t.Fatalf("Taquito's staking transaction parses as %v (%v), want [stake]", r, err)
	}
	sign("stake under generic: [stake]", stakeKey, msgOf(forged[stakeKey].Stake), true, http.StatusOK)
	sign("stake under generic: [transaction]", txKey, msgOf(forged[txKey].Stake), true, http.StatusForbidden)
	sign("transaction under generic: [transaction]", txKey, msgOf(forged[txKey].Transaction), true, http.StatusOK)
	sign("transaction under generic: [stake]", stakeKey, msgOf(forged[stakeKey].Transaction), true, http.StatusForbidden)
	// An entrypoint called stake anywhere but on the sender itself is a
	// transfer of 1,000 tez: refused to the staking key, signed for the
	// transfer key (Signatory decides the same).
	for _, c := range []struct{ name, forged string }{{"KT1", forged[stakeKey].StakeToContract}, {"another account", forged[stakeKey].StakeToOther}} {
		if r, err := request.Parse(msgOf(c.forged)); err != nil || !slices.Equal(r.Ops, []string{"transaction"}) {
			t.Fatalf("Taquito's call of %%stake on %s parses as %v (%v), want [transaction]", c.name, r, err)
		}
	}
	sign("stake entrypoint of a KT1 under generic: [stake]", stakeKey, msgOf(forged[stakeKey].StakeToContract), true, http.StatusForbidden)
	sign("stake entrypoint of another account under generic: [stake]", stakeKey, msgOf(forged[stakeKey].StakeToOther), true, http.StatusForbidden)
	sign("stake entrypoint of a KT1 under generic: [transaction]", txKey, msgOf(forged[txKey].StakeToContract), true, http.StatusOK)
	sign("stake entrypoint of another account under generic: [transaction]", txKey, msgOf(forged[txKey].StakeToOther), true, http.StatusOK)
	sign("bare entry: block", bareKey, blockBytes(mainnet, 100), true, http.StatusOK)
	sign("bare entry: attestation", bareKey, consensusBytes(request.MagicAttestation, 21, mainnet, 100, 1), true, http.StatusOK)
	sign("bare entry: preattestation", bareKey, consensusBytes(request.MagicPreattestation, 20, mainnet, 101, 1), true, http.StatusOK)
	sign("bare entry: transaction", bareKey, msgOf(forged[bareKey].Transaction), true, http.StatusForbidden)
	sign("bare entry: attestation_with_dal", bareKey, consensusBytes(request.MagicAttestation, 23, mainnet, 102, 1), true, http.StatusForbidden)
	sign("watermark: another attestation at level 100", bareKey, consensusBytes(request.MagicAttestation, 21, mainnet, 100, 2), true, http.StatusConflict)
	sign("no authentication", txKey, msgOf(forged[txKey].Transaction), false, http.StatusUnauthorized)
	status, _, body := postSign(t, api, bareKey, consensusBytes(request.MagicAttestation, 21, ghost, 100, 1), true, client)
	if status < 500 {
		t.Errorf("attestation whose watermark cannot be written: status %d, want a 5xx (%s)", status, body)
	}

	var verified []bool
	in := make([]map[string]string, len(toVerify))
	for i, s := range toVerify {
		in[i] = map[string]string{"msg": s.msg, "pk": s.pk, "sig": s.sig}
	}
	taquito.Run(t, verifyScript, in, &verified)
	if len(verified) != len(toVerify) || len(toVerify) != 7 {
		t.Fatalf("verified %d of %d signatures, want 7", len(verified), len(toVerify))
	}
	for i, ok := range verified {
		if !ok {
			t.Errorf("Taquito rejects the daemon's signature %s", toVerify[i].sig)
		}
	}

	// A vault error: the enclave is gone.
	enclave.Stop()
	status, _, body = postSign(t, api, txKey, msgOf(forged[txKey].Transaction), true, client)
	if status < 500 {
		t.Errorf("signing with the enclave stopped: status %d, want a 5xx (%s)", status, body)
	}

	families := scrapeFamilies(t, utility+"/metrics")
	for name, want := range metrics.SignatoryFamilies {
		got, ok := families[name]
		if !ok {
			t.Errorf("metric family %s is missing from /metrics", name)
			continue
		}
		w := slices.Clone(want)
		sort.Strings(w)
		for _, labels := range got {
			if !slices.Equal(labels, w) {
				t.Errorf("%s has a series with labels %v, want %v", name, labels, w)
			}
		}
	}
	t.Logf("%d Signatory metric families present with their label names", len(metrics.SignatoryFamilies))

	// Label values as Signatory writes them for the same traffic.
	samples := scrapeSamples(t, utility+"/metrics")
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"signing_ops_total", map[string]string{"vault": "ConfidentialSpace", "op": "generic", "kind": "stake", "address": stakeKey}},
		{"signing_ops_total", map[string]string{"vault": "ConfidentialSpace", "op": "attestation", "kind": "attestation", "address": bareKey}},
		{"vault_sign_request_duration_milliseconds_count", map[string]string{"vault": "ConfidentialSpace", "op": "block"}},
		{"consensus_round_total", map[string]string{"operation_type": "preattestation", "round": "0", "address": bareKey}},
		{"policy_violation_total", map[string]string{"violation_type": "stake", "operation_type": "request", "address": txKey}},
		{"policy_violation_total", map[string]string{"violation_type": "transaction", "operation_type": "request", "address": stakeKey}},
		{"policy_violation_total", map[string]string{"violation_type": "generic", "operation_type": "request", "address": bareKey}},
		{"policy_violation_total", map[string]string{"violation_type": "attestation_with_dal", "operation_type": "request", "address": bareKey}},
		{"watermark_rejection_total", map[string]string{"reason": "watermark validation failed", "operation_type": "attestation", "chain_id": "NetXdQprcVkpaWU", "address": bareKey}},
		{"vault_sign_request_error_total", map[string]string{"vault": "ConfidentialSpace", "code": "409", "chain_id": "NetXdQprcVkpaWU"}},
		{"authentication_failure_total", map[string]string{"auth_method": "authentication", "status": "401"}},
		{"watermark_operations_total", map[string]string{"backend": "file", "request_type": "generic", "result": "success"}},
		{"watermark_operations_total", map[string]string{"backend": "file", "request_type": "attestation", "result": "rejected"}},
		{"watermark_io_operations_total", map[string]string{"backend": "file", "operation": "read", "result": "success", "table_name": ""}},
	} {
		if !hasSample(samples, want.name, want.labels) {
			t.Errorf("no %s series with %v", want.name, want.labels)
		}
	}
	// Values Sigil wrote before (and Signatory never writes).
	for _, old := range []string{`authentication_failure_total{auth_method="authorized_keys"`, `reason="not_above_watermark"`,
		`violation_type="operation_kind"`, `violation_type="request_kind"`, `violation_type="not_configured"`,
		`watermark_operations_total{backend="file",request_type="attestation",result="error"`, `vault="cs"`} {
		for _, s := range samples {
			if strings.Contains(s, old) && !strings.HasPrefix(s, "sigil_") {
				t.Errorf("a Signatory family has a label value Signatory never writes: %s", s)
			}
		}
	}
	d.Stop()
}

// scrapeSamples returns the sample lines of a Prometheus text exposition.
func scrapeSamples(t *testing.T, u string) []string {
	t.Helper()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// hasSample reports whether a sample of name carries every label given
// (values exact).
func hasSample(samples []string, name string, labels map[string]string) bool {
	for _, s := range samples {
		if !strings.HasPrefix(s, name+"{") {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(s, fmt.Sprintf("%s=%q", k, v)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func runSigil(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sigil %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func getPublicKey(t *testing.T, api, pkh string) string {
	t.Helper()
	resp, err := httpClient.Get(api + "/keys/" + pkh)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.PublicKey == "" {
		t.Fatalf("GET /keys/%s: status %d, %v", pkh, resp.StatusCode, err)
	}
	return r.PublicKey
}

// postSign sends a sign request (authenticated by client when auth) and
// returns the status, the signature (on 200) and the body.
func postSign(t *testing.T, api, pkh string, msg []byte, auth bool, client testKey) (int, string, string) {
	t.Helper()
	u := api + "/keys/" + pkh
	if auth {
		h, err := tezos.ParsePublicKeyHash(pkh)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := client.sk.Sign(signer.AuthenticationData(h, msg), tezos.SignVersion2)
		if err != nil {
			t.Fatal(err)
		}
		u += "?authentication=" + url.QueryEscape(sig.String())
	}
	r := harness.PostSign(httpClient, u, msg)
	if r.Err != nil {
		t.Fatalf("POST %s: %v", u, r.Err)
	}
	if r.Status == http.StatusOK && r.Signature == "" {
		t.Fatalf("POST %s: no signature in the 200 reply %s", u, r.Body)
	}
	return r.Status, r.Signature, r.Body
}

// scrapeFamilies reads a Prometheus text exposition and returns, per
// family, the sorted label names of each series (the histogram bucket
// label le excluded).
func scrapeFamilies(t *testing.T, u string) map[string][][]string {
	t.Helper()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	types := map[string]string{}
	out := map[string][][]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			if len(f) == 4 {
				types[f[2]] = f[3]
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels := parseSample(t, line)
		fam := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suf); base != name && (types[base] == "histogram" || types[base] == "summary") {
				fam = base
			}
		}
		labels = slices.DeleteFunc(labels, func(l string) bool { return l == "le" && strings.HasSuffix(name, "_bucket") })
		sort.Strings(labels)
		out[fam] = append(out[fam], labels)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// parseSample splits `name{a="x",b="y"} value` into the name and the label
// names (label values may hold escaped quotes).
func parseSample(t *testing.T, line string) (string, []string) {
	t.Helper()
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		t.Fatalf("malformed sample %q", line)
	}
	name := line[:i]
	if line[i] != '{' {
		return name, nil
	}
	var labels []string
	rest := line[i+1:]
	for {
		rest = strings.TrimLeft(rest, ", ")
		if strings.HasPrefix(rest, "}") {
			return name, labels
		}
		eq := strings.Index(rest, `="`)
		if eq < 0 {
			t.Fatalf("malformed labels in %q", line)
		}
		labels = append(labels, rest[:eq])
		j := eq + 2
		for ; j < len(rest) && rest[j] != '"'; j++ {
			if rest[j] == '\\' {
				j++
			}
		}
		if j >= len(rest) {
			t.Fatalf("unterminated label value in %q", line)
		}
		rest = rest[j+1:]
	}
}
