package signatorydiff

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// corpusKey is a test key of testdata/corpus.json.
type corpusKey struct {
	Type string `json:"type"`
	SK   string `json:"sk"`
	PK   string `json:"pk"`
	PKH  string `json:"pkh"`
}

// corpus is testdata/corpus.json (keys and forged requests, made by
// tools/taquito/signatorydiff-corpus.js) plus the generic operations of
// domain/request/testdata/vectors.json (forge-vectors.js).
type corpus struct {
	Generator string               `json:"generator"`
	Taquito   string               `json:"taquito"`
	Chains    map[string]string    `json:"chains"`
	Keys      map[string]corpusKey `json:"keys"`
	Messages  map[string]string    `json:"messages"`

	// ops are the generic operation vectors: name -> hex, in file order
	// (opNames), with the operation kinds each holds.
	ops     map[string]string
	opNames []string
	opKinds map[string][]string
	// packs are the vectors of packed Micheline data (0x05), by name in
	// ops, in file order.
	packs []string
}

func loadCorpus(t testing.TB) *corpus {
	t.Helper()
	var c corpus
	readJSON(t, filepath.Join("testdata", "corpus.json"), &c)
	if c.Generator != "tools/taquito/signatorydiff-corpus.js" || len(c.Keys) == 0 || len(c.Messages) == 0 {
		t.Fatalf("testdata/corpus.json is not the output of tools/taquito/signatorydiff-corpus.js")
	}
	var v struct {
		Generator string `json:"generator"`
		Vectors   []struct {
			Name string   `json:"name"`
			Hex  string   `json:"hex"`
			Kind string   `json:"kind"`
			Ops  []string `json:"ops"`
		} `json:"vectors"`
	}
	readJSON(t, filepath.Join("..", "..", "domain", "request", "testdata", "vectors.json"), &v)
	c.ops, c.opKinds = map[string]string{}, map[string][]string{}
	for _, vec := range v.Vectors {
		switch vec.Kind {
		case "generic":
			c.ops[vec.Name] = vec.Hex
			c.opKinds[vec.Name] = vec.Ops
			c.opNames = append(c.opNames, vec.Name)
		case "pack", "micheline":
			c.ops[vec.Name] = vec.Hex
			c.packs = append(c.packs, vec.Name)
		}
	}
	if len(c.opNames) == 0 {
		t.Fatalf("domain/request/testdata/vectors.json (%s) holds no generic operation", v.Generator)
	}
	return &c
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// key returns a corpus key by name; an unknown name is a bug in the tables.
func (c *corpus) key(name string) corpusKey {
	k, ok := c.Keys[name]
	if !ok {
		panic(fmt.Sprintf("corpus has no key %q", name))
	}
	return k
}

// message returns the bytes of a corpus message: "op:<vector>" names a
// generic operation vector, anything else a message of corpus.json.
func (c *corpus) message(name string) ([]byte, error) {
	h, ok := c.Messages[name]
	if v, isOp := strings.CutPrefix(name, "op:"); isOp {
		h, ok = c.ops[v]
	}
	if !ok {
		return nil, fmt.Errorf("corpus has no message %q", name)
	}
	return hex.DecodeString(h)
}

// TestCorpus checks the corpus itself (no daemon): every key's hash and
// public key agree with its secret key; every generic operation kind
// Sigil's parser knows has a vector; the consensus requests parse with the
// kind, level and round their names say; the staking requests are
// classified as their names say (self: the pseudo-operation; kt1, other,
// self-named: a transaction). A wrong corpus would make the differential
// test compare the wrong things.
func TestCorpus(t *testing.T) {
	c := loadCorpus(t)
	for name, k := range c.Keys {
		sk, err := tezos.ParsePrivateKey(k.SK)
		if err != nil {
			t.Fatalf("key %s: %v", name, err)
		}
		pk, err := sk.Public()
		sk.Zero()
		if err != nil || pk.String() != k.PK || pk.Hash().String() != k.PKH || !strings.HasPrefix(k.PKH, k.Type) {
			t.Errorf("key %s: public key %v (%v), corpus says %s %s %s", name, pk, err, k.Type, k.PK, k.PKH)
		}
	}
	covered := map[string]bool{}
	for _, name := range c.opNames {
		for _, k := range c.opKinds[name] {
			covered[k] = true
		}
	}
	for _, k := range request.GenericOperationKinds() {
		if !covered[k] {
			t.Errorf("no generic operation vector of kind %s (regenerate domain/request/testdata/vectors.json with tools/taquito/forge-vectors.js)", k)
		}
	}
	kinds := map[string]struct {
		kind request.Kind
		op   string
	}{
		"blk": {request.KindBlock, ""}, "pre": {request.KindPreattestation, "preattestation"},
		"att": {request.KindAttestation, "attestation"}, "dal": {request.KindAttestation, "attestation_with_dal"},
		"bpre": {request.KindPreattestation, "preattestation"}, "batt": {request.KindAttestation, "attestation"},
	}
	checked := map[string]int{}
	for name, h := range c.Messages {
		msg, _ := hex.DecodeString(h)
		parts := strings.Split(name, "/")
		checked[parts[0]]++
		switch want, consensus := kinds[parts[0]]; {
		case consensus:
			r, err := request.Parse(msg)
			if strings.HasSuffix(name, "/fitness-short") {
				if err == nil {
					t.Errorf("%s parses; it is meant to be refused", name)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			var level, round int32
			fmt.Sscan(parts[2], &level)
			fmt.Sscan(parts[3], &round)
			if r.Kind != want.kind || r.OpKind != want.op || r.Level != level || r.Round != round || r.ChainID.String() != c.Chains[parts[1]] {
				t.Errorf("%s parses as %s/%s level %d round %d chain %s", name, r.Kind, r.OpKind, r.Level, r.Round, r.ChainID)
			}
		case parts[0] == "staking":
			r, err := request.Parse(msg)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			want := []string{"transaction"}
			switch {
			case parts[2] == "batch":
				want = []string{"transaction", "stake"}
			case parts[3] == "self":
				want = []string{parts[2]}
			}
			if !slices.Equal(r.Ops, want) {
				t.Errorf("%s is classified as %v, want %v", name, r.Ops, want)
			}
		case parts[0] == "ballot":
			if r, err := request.Parse(msg); err != nil || !slices.Equal(r.Ops, []string{"ballot"}) {
				t.Errorf("%s parses as %v (%v)", name, r, err)
			}
		}
	}
	for _, k := range []string{"blk", "pre", "att", "dal", "bpre", "batt", "staking", "ballot"} {
		if checked[k] == 0 {
			t.Errorf("the corpus has no %s message", k)
		}
	}
}

// TestCorpusRegenerates runs tools/taquito/signatorydiff-corpus.js and
// checks that its output is testdata/corpus.json byte for byte: the
// checked-in corpus is what the script makes (fixed seeds, Taquito's
// deterministic forger).
func TestCorpusRegenerates(t *testing.T) {
	nm := taquito.NodeModules(t)
	root := taquito.RepoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("tools", "taquito", "signatorydiff-corpus.js"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "NODE_PATH="+nm)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node tools/taquito/signatorydiff-corpus.js: %v\n%s", err, stderr.String())
	}
	want, err := os.ReadFile(filepath.Join("testdata", "corpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("testdata/corpus.json is not the output of tools/taquito/signatorydiff-corpus.js (%d bytes, script %d): regenerate it with\n"+
			"  NODE_PATH=tools/taquito/node_modules node tools/taquito/signatorydiff-corpus.js > integration/signatorydiff/testdata/corpus.json",
			len(want), out.Len())
	}
}
