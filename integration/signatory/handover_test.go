package signatory_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// stateRequest is one entry of testdata/signatory-state/requests.json.
type stateRequest struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	Hex  string `json:"hex"`
	Last bool   `json:"last"`
}

// TestHandoverFromSignatory runs `sigil serve` on a state directory
// Signatory v1.4.0 wrote (testdata/signatory-state: its file watermark
// backend's watermark_v2 after a block, preattestations and attestations,
// tz1 and tz4) with the same keys in a file vault. The identical repeat of
// the last request Signatory signed of each kind is signed again (200, a
// signature Taquito verifies), as Signatory itself would, and leaves
// Signatory's mark as it was; another payload at that level and round, a
// lower request and the repeat of an earlier, superseded request are
// refused (409); a higher one is signed and recorded.
func TestHandoverFromSignatory(t *testing.T) {
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	taquito.NodeModules(t)
	src := filepath.Join("testdata", "signatory-state")
	var reqs []stateRequest
	readJSON(t, filepath.Join(src, "requests.json"), &reqs)

	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	wmFile := filepath.Join(base, "watermark_v2", "NetXdQprcVkpaWU.json")
	signatoryMarks, err := os.ReadFile(filepath.Join(src, "watermark_v2", "NetXdQprcVkpaWU.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(wmFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wmFile, signatoryMarks, 0o600); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(src, "secret.json"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "secret.json")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, r := range reqs {
		keys[r.Key] = true
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
watermark:
  driver: file
tezos:
`, base, keyFile)
	for k := range keys {
		cfg += "  " + k + ":\n"
	}
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := harness.StartDaemon(t, harness.DaemonOptions{Binary: sigil, Config: cfgPath})
	if d.Keys != len(keys) {
		t.Fatalf("the daemon loaded %d keys, want %d:\n%s", d.Keys, len(keys), d.Log())
	}
	pks := map[string]string{}
	for k := range keys {
		pks[k] = getPublicKey(t, d.API, k)
	}

	type signed struct{ msg, pk, sig string }
	var toVerify []signed
	post := func(what, pkh string, msg []byte, want int) {
		t.Helper()
		r := harness.PostSign(httpClient, d.API+"/keys/"+pkh, msg)
		if r.Err != nil {
			t.Fatalf("%s: %v", what, r.Err)
		}
		if r.Status != want {
			t.Errorf("%s: status %d, want %d (%s)", what, r.Status, want, r.Body)
			return
		}
		if want == http.StatusOK {
			toVerify = append(toVerify, signed{hex.EncodeToString(msg), pks[pkh], r.Signature})
		}
	}
	var last []stateRequest
	for _, r := range reqs {
		msg, err := hex.DecodeString(r.Hex)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Last {
			// Superseded: Signatory refuses it too (below its mark).
			post("repeat of the superseded "+r.Name, r.Key, msg, http.StatusConflict)
			continue
		}
		last = append(last, r)
		for i := range 2 {
			post(fmt.Sprintf("identical repeat #%d of Signatory's last %s", i+1, r.Name), r.Key, msg, http.StatusOK)
		}
		parsed, err := request.Parse(msg)
		if err != nil {
			t.Fatal(err)
		}
		other := variant(t, msg, parsed, parsed.Level, parsed.Round, 0x77)
		post("another payload at the level and round of "+r.Name, r.Key, other, http.StatusConflict)
		lower := variant(t, msg, parsed, parsed.Level-1, parsed.Round+3, 0x78)
		post("lower than "+r.Name, r.Key, lower, http.StatusConflict)
	}
	if len(last) != 5 {
		t.Fatalf("%d last requests in requests.json, want 5", len(last))
	}
	// Nothing was recorded over Signatory's marks.
	now, err := os.ReadFile(wmFile)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, now, signatoryMarks) {
		t.Errorf("the watermark file changed although only identical requests were signed:\n%s", now)
	}
	// Higher requests are signed and recorded, with their signature.
	for _, r := range last {
		msg, _ := hex.DecodeString(r.Hex)
		parsed, _ := request.Parse(msg)
		post("higher than "+r.Name, r.Key, variant(t, msg, parsed, parsed.Level+1, 0, 0x79), http.StatusOK)
	}
	var marks map[string]map[string]struct {
		Level     int32  `json:"level"`
		Signature string `json:"signature"`
	}
	readJSON(t, wmFile, &marks)
	for _, r := range last {
		parsed, _ := request.Parse(mustDecodeHex(t, r.Hex))
		m := marks[r.Key][string(parsed.Kind)]
		if m.Level != parsed.Level+1 || m.Signature == "" {
			t.Errorf("%s: recorded %+v after the higher request, want level %d with its signature", r.Name, m, parsed.Level+1)
		}
	}

	in := make([]map[string]string, len(toVerify))
	for i, s := range toVerify {
		in[i] = map[string]string{"msg": s.msg, "pk": s.pk, "sig": s.sig}
	}
	var verified []bool
	taquito.Run(t, verifyScript, in, &verified)
	if want := 3 * len(last); len(toVerify) != want || len(verified) != want {
		t.Fatalf("%d signatures, %d verified; want %d", len(toVerify), len(verified), want)
	}
	for i, ok := range verified {
		if !ok {
			t.Errorf("Taquito rejects the daemon's signature %s", toVerify[i].sig)
		}
	}
	d.Stop()
}

// variant rebuilds a consensus request of the same kind and key at another
// level and round, with a payload hash starting with payload.
func variant(t *testing.T, msg []byte, r *request.Request, level, round int32, payload byte) []byte {
	t.Helper()
	var out []byte
	if r.Kind == request.KindBlock {
		// The test blocks have fitness round = round and payload round 0.
		out = blockBytes(r.ChainID, level)
		if round != 0 {
			out = blockAtRound(r.ChainID, level, round)
		}
		// blockBytes' payload hash starts with filler(32, 150); mark it.
		ph := len(out) - 1 - 1 - 8 - 4 - 32
		out[ph] = payload
	} else {
		out = consensusBytes(msg[0], msg[37], r.ChainID, level, payload)
		round32 := be32(round)
		at := len(out) - 32 - 4
		copy(out[at:], round32)
	}
	p, err := request.Parse(out)
	if err != nil || p.Kind != r.Kind || p.OpKind != r.OpKind || p.Level != level || p.Round != round {
		t.Fatalf("variant of %s at level %d round %d parses as %+v (%v)", r.Kind, level, round, p, err)
	}
	return out
}

// blockAtRound is blockBytes with the fitness round set.
func blockAtRound(chain request.ChainID, level, round int32) []byte {
	b := blockBytes(chain, level)
	// The fitness's last element (round) is right before the 32-byte
	// context hash: 4 bytes.
	at := 1 + 4 + 4 + 1 + 32 + 8 + 1 + 32 // fitness length field
	flen := int(uint32(b[at])<<24 | uint32(b[at+1])<<16 | uint32(b[at+2])<<8 | uint32(b[at+3]))
	copy(b[at+4+flen-4:], be32(round))
	return b
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func mustDecodeHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
