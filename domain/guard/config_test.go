package guard_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/domain/request"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

const (
	tz1 = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
	tz4 = "tz4XXtsYav3fZz2FSDa7hcx4F8sh8SaDWNME"
	kt1 = "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXitn"
)

// TestGuardParseRules: accepted policies, and what they mean.
func TestGuardParseRules(t *testing.T) {
	rs := mustRules(t, `{
	  "keys": {"`+tz1+`": {"allow": {"generic": ["transaction", "reveal", "endorsement", "ballot:yay"]},
	                      "transaction_destinations": ["`+kt1+`", "`+tz4+`", "`+kt1+`"]},
	           "`+tz4+`": {"allow": {"endorsement": null, "preendorsement": []}, "allowed_chains": ["NetXdQprcVkpaWU"]}},
	  "key_types": {"tz4": {"allow": {"block": [], "preattestation": [], "attestation": []}}}
	}`)
	p1, _ := tezos.ParsePublicKeyHash(tz1)
	p4, _ := tezos.ParsePublicKeyHash(tz4)
	r1, where := rs.For(p1)
	if where != "keys."+tz1 || len(r1.Destinations) != 2 || r1.Destinations[0].String() != kt1 || len(r1.AllowedChains) != 0 {
		t.Fatalf("tz1 rule %s: %+v", where, r1)
	}
	if got := strings.Join(r1.Allow["generic"], ","); got != "transaction,reveal,attestation,ballot:yay" {
		t.Fatalf("generic ops %s (older names folded)", got)
	}
	r4, where := rs.For(p4)
	if where != "keys."+tz4 || len(r4.Allow) != 2 || r4.AllowedChains[0] != "NetXdQprcVkpaWU" {
		t.Fatalf("own tz4 rule %s: %+v", where, r4)
	}
	other := tezos.PublicKeyHash{Type: tezos.BLS, Hash: [20]byte{9}}
	if _, where := rs.For(other); where != "key_types.tz4" {
		t.Fatalf("another tz4 key: %s", where)
	}
	if r, _ := rs.For(tezos.PublicKeyHash{Type: tezos.P256}); r != nil {
		t.Fatal("a tz3 key has a rule")
	}
	// The canonical form reads back as the same rules.
	again, err := guard.ParseRules(rs.Format())
	if err != nil || string(again.Format()) != string(rs.Format()) {
		t.Fatalf("Format does not round-trip: %s: %v", rs.Format(), err)
	}
	if s := rs.String(); s != "2 key rules, key type rules for [tz4]" {
		t.Fatalf("String: %s", s)
	}
}

// TestGuardParseRulesErrors: every refusal names the field and what is
// wrong, with the closest known names for a misspelt one.
func TestGuardParseRulesErrors(t *testing.T) {
	rule := func(body string) string { return `{"key_types":{"tz4":` + body + `}}` }
	cases := []struct {
		name, policy, field, msg string
	}{
		{"empty", ``, "", "empty"},
		{"blank", " \n ", "", "empty"},
		{"too large", `{"keys":{}` + strings.Repeat(" ", guard.MaxPolicySize) + `}`, "", "more than 4096"},
		{"not JSON", `{keys:}`, "", "invalid JSON at byte 1: invalid character"},
		{"truncated", `{"keys":{"` + tz1 + `":{"allow":{`, "keys." + tz1 + ".allow", "ends too early"},
		{"a list", `[]`, "", "want the policy, an object, got a list"},
		{"trailing data", rule(`{"allow":{"block":[]}}`) + ` {}`, "", "unexpected data after the policy object"},
		{"no rule", `{}`, "", "no rule"},
		{"no rule, empty maps", `{"keys":{},"key_types":{}}`, "", "no rule"},
		{"unknown top field", `{"key_type":{}}`, "key_type", "did you mean key_types?"},
		{"unknown rule field", rule(`{"alow":{}}`), "key_types.tz4.alow", "did you mean allow?"},
		{"misspelt chains", rule(`{"allow":{},"allowed_chain":[]}`), "key_types.tz4.allowed_chain", "did you mean allowed_chains?"},
		{"missing allow", rule(`{"allowed_chains":[]}`), "key_types.tz4", "missing allow"},
		{"unknown request kind", rule(`{"allow":{"attestaton":[]}}`), "key_types.tz4.allow.attestaton", `unknown request kind "attestaton" (did you mean attestation?`},
		{"unknown operation kind", rule(`{"allow":{"generic":["reveal","transfer"]}}`), "key_types.tz4.allow.generic[1]", `unknown operation kind "transfer"`},
		{"bad ballot", rule(`{"allow":{"generic":["ballot:yes"]}}`), "key_types.tz4.allow.generic[0]", "only ballot takes a sub-kind"},
		{"name matching nothing", rule(`{"allow":{"generic":["tx_rollup_origination"]}}`), "key_types.tz4.allow", "matches nothing"},
		{"failing_noop as a request kind", rule(`{"allow":{"failing_noop":[]}}`), "key_types.tz4.allow", "matches no request"},
		{"operation not a string", rule(`{"allow":{"generic":["reveal",7]}}`), "key_types.tz4.allow.generic[1]", "want a string, got a number"},
		{"allow a list", rule(`{"allow":["block"]}`), "key_types.tz4.allow", "want allow (request kind → operation kinds), an object, got a list"},
		{"ops an object", rule(`{"allow":{"generic":{}}}`), "key_types.tz4.allow.generic", "want a list of strings, got an object"},
		{"repeated field", rule(`{"allow":{},"allow":{}}`), "key_types.tz4.allow", "repeated"},
		{"repeated kind", rule(`{"allow":{"block":[],"block":[]}}`), "key_types.tz4.allow.block", "repeated"},
		{"repeated key type", `{"key_types":{"tz4":{"allow":{}},"tz4":{"allow":{}}}}`, "key_types.tz4", "repeated"},
		{"unknown key type", `{"key_types":{"bls":{"allow":{}}}}`, "key_types.bls", "want tz1, tz2, tz3 or tz4"},
		{"misspelt key type", `{"key_types":{"tz5":{"allow":{}}}}`, "key_types.tz5", "did you mean"},
		{"bad address", `{"keys":{"tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSy":{"allow":{}}}}`, "keys.tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSy", "valid checksum"},
		{"a secret key as address", `{"keys":{"edsk3gUfUPyBSfrS9CCgmCiQsTCHGkviBDusMxDJstFtojtc1zcpsh":{"allow":{}}}}`, "keys." + domain.NotRepeated, "not a key address"},
		{"bad chain", rule(`{"allow":{},"allowed_chains":["NetXdQprcVkpaWV"]}`), "key_types.tz4.allowed_chains[0]", "invalid chain id"},
		{"bad destination", rule(`{"allow":{"generic":["transaction"]},"transaction_destinations":["KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXito"]}`), "key_types.tz4.transaction_destinations[0]", "invalid contract address"},
		{"destinations without transactions", rule(`{"allow":{"generic":["reveal"]},"transaction_destinations":[]}`), "key_types.tz4.transaction_destinations", "does not list transaction"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := guard.ParseRules([]byte(c.policy))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *guard.ConfigError
			if !errors.As(err, &ce) || domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("%v: not an invalid *ConfigError", err)
			}
			if ce.Field != c.field || !strings.Contains(ce.Msg, c.msg) {
				t.Fatalf("got field %q msg %q, want field %q and %q", ce.Field, ce.Msg, c.field, c.msg)
			}
			if strings.Contains(err.Error(), "edsk3gUf") {
				t.Fatal("a secret key is repeated")
			}
		})
	}
}

// FuzzGuardParseRules: any input is accepted or refused with a
// *ConfigError of kind invalid, never a panic; an accepted policy has a
// rule, only known names, and its canonical form reads back as itself.
func FuzzGuardParseRules(f *testing.F) {
	f.Add([]byte(consensusTz4))
	f.Add([]byte(`{"keys":{"` + tz1 + `":{"allow":{"generic":["transaction"]},"transaction_destinations":["` + kt1 + `"],"allowed_chains":["NetXdQprcVkpaWU"]}}}`))
	f.Add([]byte(`{"keys":{"` + tz4 + `":{"allow":{"endorsement":null}}},"key_types":{"tz1":{"allow":{"generic":["ballot:nay","stake"]}}}}`))
	f.Add([]byte(`{"key_types":{"tz2":{"allow":{"block":[],"block":[]}}}}`))
	f.Add([]byte(`{"keys":{}}`))
	f.Add([]byte(`[[[[{"a":1}]]]]`))
	known := map[string]bool{}
	for _, k := range request.RequestKinds() {
		known[k] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := guard.ParseRules(data)
		if err != nil {
			var ce *guard.ConfigError
			if rs != nil || !errors.As(err, &ce) || domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("error %v (%T) with rules %v", err, err, rs)
			}
			return
		}
		if len(data) > guard.MaxPolicySize || len(rs.Keys)+len(rs.Types) == 0 {
			t.Fatalf("accepted %d bytes with %d rules", len(data), len(rs.Keys)+len(rs.Types))
		}
		check := func(r *guard.Rule) {
			for k := range r.Allow {
				if !known[k] {
					t.Fatalf("unknown request kind %q accepted", k)
				}
			}
		}
		for _, r := range rs.Keys {
			check(r)
		}
		for _, r := range rs.Types {
			check(r)
		}
		form := rs.Format()
		again, err := guard.ParseRules(form)
		if err != nil || string(again.Format()) != string(form) {
			t.Fatalf("canonical form %s does not read back: %v", form, err)
		}
	})
}

// TestGuardLocksLeaveNothing: requests for many keys, allowed, refused and
// timed out, leave no per-key state in the guard.
func TestGuardLocksLeaveNothing(t *testing.T) {
	st := &faultyState{GuardState: mem.New(mem.Config{})}
	g, err := guard.New(mustRules(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`), st, guard.Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		k := newKey(t, tezos.Ed25519)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				msg := rt.Attestation(rt.Mainnet, 10, 0, byte(j))
				_, _ = g.Sign(context.Background(), k.req(msg, 2), k.sign(msg, 2))
			}
		}()
		if i == 20 {
			st.block = true // the rest time out
		}
	}
	wg.Wait()
	if n := guard.HeldLocks(g); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}
