package signatory_test

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// TestBallotVotesAndPackEndToEnd runs `sigil serve` with a configuration
// Signatory serves and Sigil used to refuse at start: per-vote ballot kinds
// (`generic: ["ballot:yay", "ballot:pass"]`) and the request kind `pack`.
// Ballots forged by Taquito are signed or refused by their vote, packed
// Micheline data (Taquito's encoder) is signed and refused with bytes after
// it; the metrics carry Signatory's values (the refused ballot:nay, the File
// vault, pack); and the router answers 405 with Allow for another method.
func TestBallotVotesAndPackEndToEnd(t *testing.T) {
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	taquito.NodeModules(t)
	dir := t.TempDir()
	var reqs []stateRequest
	readJSON(t, filepath.Join("testdata", "signatory-state", "requests.json"), &reqs)
	tz1 := reqs[0].Key
	secret, err := os.ReadFile(filepath.Join("testdata", "signatory-state", "secret.json"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "secret.json")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
vaults:
  local:
    driver: file
    config:
      file: %s
tezos:
  %s:
    allow:
      pack:
      generic: ["ballot:yay", "ballot:pass"]
`, filepath.Join(dir, "base"), keyFile, tz1)
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := harness.StartDaemon(t, harness.DaemonOptions{Binary: sigil, Config: cfgPath})
	pk := getPublicKey(t, d.API, tz1)

	type signed struct{ msg, sig string }
	var toVerify []signed
	post := func(name string, msg []byte, want int, msgContains string) {
		t.Helper()
		r := harness.PostSign(httpClient, d.API+"/keys/"+tz1, msg)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Status != want || !strings.Contains(r.Body, msgContains) {
			t.Errorf("%s: status %d, want %d with %q (%s)", name, r.Status, want, msgContains, r.Body)
			return
		}
		if want == http.StatusOK {
			toVerify = append(toVerify, signed{hex.EncodeToString(msg), r.Signature})
		}
	}
	var ballots, packs int
	for _, v := range loadVectors(t) {
		raw, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case v.Kind == "pack":
			packs++
			post(v.Name, raw, http.StatusOK, "")
			post(v.Name+" with a byte after it", append(raw, 0), http.StatusBadRequest, "trailing")
		case len(v.Ops) == 1 && v.Ops[0] == "ballot":
			ballots++
			switch vote := v.Ballots[0]; vote {
			case "yay", "pass":
				post(v.Name, raw, http.StatusOK, "")
			default:
				post(v.Name, raw, http.StatusForbidden, `operation \"ballot:`+vote+`\" is not allowed`)
			}
		}
	}
	if ballots != 3 || packs < 5 {
		t.Fatalf("%d ballot and %d pack vectors", ballots, packs)
	}
	in := make([]map[string]string, len(toVerify))
	for i, s := range toVerify {
		in[i] = map[string]string{"msg": s.msg, "pk": pk, "sig": s.sig}
	}
	var verified []bool
	taquito.Run(t, verifyScript, in, &verified)
	if len(verified) != len(toVerify) {
		t.Fatalf("verified %d of %d", len(verified), len(toVerify))
	}
	for i, ok := range verified {
		if !ok {
			t.Errorf("Taquito rejects the signature of %s", toVerify[i].msg)
		}
	}

	req, err := http.NewRequest(http.MethodPut, d.API+"/keys/"+tz1, strings.NewReader(`"05030b"`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("PUT /keys/%s: %d, Allow %q; want 405 with GET, HEAD, POST", tz1, resp.StatusCode, resp.Header.Get("Allow"))
	}

	samples := scrapeSamples(t, d.Utility+"/metrics")
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"policy_violation_total", map[string]string{"violation_type": "ballot:nay", "operation_type": "request", "address": tz1}},
		{"signing_ops_total", map[string]string{"vault": "File", "op": "generic", "kind": "ballot", "address": tz1}},
		{"signing_ops_total", map[string]string{"vault": "File", "op": "pack", "kind": "pack", "address": tz1}},
		{"watermark_operations_total", map[string]string{"request_type": "pack", "result": "success", "backend": "file"}},
	} {
		if !hasSample(samples, want.name, want.labels) {
			t.Errorf("no %s series with %v", want.name, want.labels)
		}
	}
	d.Stop()
}
