package guard

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/policy"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Rule is what one key, or every key of one type, may sign inside the
// enclave.
type Rule struct {
	// Allow maps a request kind to the operation kinds allowed in it, as
	// policy.Normalize returns it (and as the daemon's `allow` means it):
	// only the generic list is consulted.
	Allow map[string][]string
	// AllowedChains, when not empty, are the base58 chain ids a consensus
	// request may name.
	AllowedChains []string
	// Destinations, when not nil, are the only destinations a transaction
	// may have: every transaction of a generic request must go to one of
	// them. The staking operations (a transaction to its own source) are
	// not transactions and are allowed or refused by their kind alone, as
	// are the other kinds that move funds (transfer_ticket, drain_delegate,
	// origination, …).
	Destinations []request.Contract
}

// Rules is the guard's policy: a rule per key, and a rule per key type for
// the keys that have none of their own. A key with neither signs nothing.
type Rules struct {
	Keys  map[tezos.PublicKeyHash]*Rule
	Types map[tezos.KeyType]*Rule
}

// For returns the rule of pkh and where it comes from (keys.tz1…,
// key_types.tz4), or nil.
func (rs *Rules) For(pkh tezos.PublicKeyHash) (*Rule, string) {
	if r, ok := rs.Keys[pkh]; ok {
		return r, "keys." + pkh.String()
	}
	if r, ok := rs.Types[pkh.Type]; ok {
		return r, "key_types." + pkh.Type.AddressPrefix()
	}
	return nil, ""
}

// check applies the rule to a classified request of the key addr: its
// chain, its request kind and operations (policy.CheckChain, policy.Check:
// the daemon's own decision), then the destinations of its transactions.
// where names the rule. A refusal is a domain.KindForbidden refusal.
func (r *Rule) check(req *request.Request, addr, where string) error {
	who := addr + " (guard rule " + where + ")"
	if err := policy.CheckChain(r.AllowedChains, req, who); err != nil {
		return refusal(domain.KindForbidden, nil, "%s", err.Error())
	}
	if _, err := policy.Check(r.Allow, req, who); err != nil {
		return refusal(domain.KindForbidden, nil, "%s", err.Error())
	}
	if r.Destinations == nil || req.Destinations == nil {
		return nil
	}
	for i, op := range req.Ops {
		if op != "transaction" {
			continue
		}
		if d := req.Destinations[i]; !slices.Contains(r.Destinations, d) {
			return refusal(domain.KindForbidden, nil, "operation #%d, a transaction to %s, is not allowed for %s: its destination is not in transaction_destinations (%s)",
				i+1, d, who, contracts(r.Destinations))
		}
	}
	return nil
}

func contracts(cs []request.Contract) string {
	if len(cs) == 0 {
		return "empty: no transaction"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return strings.Join(out, ", ")
}

// String describes the rules in one line for a log: how many keys and
// which key types have a rule.
func (rs *Rules) String() string {
	var types []string
	for _, t := range tezos.KeyTypes {
		if _, ok := rs.Types[t]; ok {
			types = append(types, t.AddressPrefix())
		}
	}
	return fmt.Sprintf("%d key rules, key type rules for [%s]", len(rs.Keys), strings.Join(types, " "))
}
