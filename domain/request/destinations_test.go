package request_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// TestDestinationsTaquito checks Request.Destinations against an independent
// decoder: Taquito's local forger parses every generic vector (those it
// knows), and each transaction's destination must be the one Parse reports,
// at the same index; every other operation has none.
func TestDestinationsTaquito(t *testing.T) {
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name   string `json:"name"`
			Source string `json:"source"`
			Hex    string `json:"hex"`
			Kind   string `json:"kind"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	type in struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
	}
	var ins []in
	for _, v := range file.Vectors {
		// The vectors Taquito forged itself (not those assembled field by
		// field from its encoders, which its parser may not know).
		if v.Kind == "generic" && v.Source == "taquito-forge" {
			ins = append(ins, in{v.Name, v.Hex[2:]})
		}
	}
	var out map[string][]*string // vector name → destination per operation (null: none); absent: Taquito cannot parse it
	taquito.Run(t, `
const { LocalForger, ProtocolsHash } = require('@taquito/local-forging');
const forger = new LocalForger(ProtocolsHash.PsUshuai9);
const res = {};
for (const v of input) {
  try {
    const op = await forger.parse(v.hex);
    res[v.name] = op.contents.map((c) => c.kind === 'transaction' ? c.destination : null);
  } catch (e) { /* a kind Taquito's forger does not know */ }
}
return res;`, ins, &out)

	checked := 0
	for _, v := range ins {
		want, ok := out[v.Name]
		if !ok {
			continue
		}
		msg, _ := hex.DecodeString("03" + v.Hex)
		r, err := request.Parse(msg)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if len(want) != len(r.Ops) {
			// Taquito's parser stops early on some batches (a ballot
			// then proposals); the operation count itself is checked
			// against the generator by TestTaquitoVectors. Such a batch
			// must not be one whose destinations this test would skip.
			if slices.Contains(r.Ops, "transaction") {
				t.Fatalf("%s: Taquito sees %d operations, Parse %d (%v)", v.Name, len(want), len(r.Ops), r.Ops)
			}
			t.Logf("%s: Taquito's parser sees %d operations of %d; no transaction in it", v.Name, len(want), len(r.Ops))
			continue
		}
		for i, w := range want {
			var got request.Contract
			if r.Destinations != nil {
				got = r.Destinations[i]
			}
			switch {
			case w == nil && !got.IsZero():
				t.Errorf("%s: operation %d (%s) has destination %s, Taquito none", v.Name, i, r.Ops[i], got)
			case w != nil && got.String() != *w:
				t.Errorf("%s: operation %d (%s) destination %q, Taquito %q", v.Name, i, r.Ops[i], got, *w)
			case w != nil:
				checked++
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d transaction destinations checked against Taquito", checked)
	}
	t.Logf("%d transaction destinations agree with Taquito", checked)
}

// TestParseContract: addresses round-trip; malformed ones are refused with
// the input named; an originated contract's padding byte is ignored.
func TestParseContract(t *testing.T) {
	for _, s := range []string{"tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx", "tz2QPsZoZse4eeahhg5DdfnBDB4VbU1PwgxN",
		"tz3ZbCsUveF3Q6WUNkThT1wyJyhPunanaAXK", "tz4XXtsYav3fZz2FSDa7hcx4F8sh8SaDWNME", "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXitn"} {
		c, err := request.ParseContract(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if c.String() != s {
			t.Fatalf("%s round-trips as %s", s, c)
		}
	}
	for _, s := range []string{"", "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXito", "NetXdQprcVkpaWU", "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSy", "edsk3gUfUPyBSfrS9CCgmCiQsTCHGkviBDusMxDJstFtojtc1zcpsh"} {
		_, err := request.ParseContract(s)
		if err == nil {
			t.Fatalf("%q accepted", s)
		}
		if len(s) > 40 && !strings.Contains(err.Error(), "not repeated") {
			t.Fatalf("%q: a secret-looking input is repeated: %v", s, err)
		}
	}
}
