package policy_test

import (
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/policy"
	"github.com/sigil-signer/sigil/domain/request"
)

func mustNormalize(t *testing.T, allow map[string][]string) map[string][]string {
	t.Helper()
	out, warnings, err := policy.Normalize(allow, nil, nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("Normalize(%v): %v %v", allow, warnings, err)
	}
	return out
}

// TestCheck is the decision table of Check: the request kind, then every
// operation of a generic request, a ballot by `ballot` or by its vote, the
// staking pseudo-operations apart from transaction.
func TestCheck(t *testing.T) {
	consensus := map[string][]string{"block": nil, "preattestation": nil, "attestation": nil}
	payout := map[string][]string{"generic": {"transaction", "reveal"}}
	staking := map[string][]string{"generic": {"stake", "unstake", "finalize_unstake", "set_delegate_parameters"}}
	voter := map[string][]string{"generic": {"ballot:yay", "proposals"}}
	gen := func(ops ...string) *request.Request {
		return &request.Request{Kind: request.KindGeneric, Ops: ops}
	}
	ballot := func(vote string) *request.Request {
		return &request.Request{Kind: request.KindGeneric, Ops: []string{"ballot"}, Ballots: []string{vote}}
	}
	cases := []struct {
		name      string
		allow     map[string][]string
		req       *request.Request
		violation string // "" allowed
	}{
		{"block on consensus key", consensus, &request.Request{Kind: request.KindBlock}, ""},
		{"attestation on consensus key", consensus, &request.Request{Kind: request.KindAttestation, OpKind: request.OpAttestation}, ""},
		{"attestation with DAL is its own kind", consensus, &request.Request{Kind: request.KindAttestation, OpKind: request.OpAttestationWithDAL}, "attestation_with_dal"},
		{"transfer from consensus key", consensus, gen("transaction"), "generic"},
		{"pack on consensus key", consensus, &request.Request{Kind: request.KindPack}, "pack"},
		{"transfer from payout key", payout, gen("reveal", "transaction"), ""},
		{"delegation in a payout batch", payout, gen("transaction", "delegation"), "delegation"},
		{"stake from payout key", payout, gen("stake"), "stake"},
		{"stake from staking key", staking, gen("stake"), ""},
		{"transfer from staking key", staking, gen("transaction"), "transaction"},
		{"block from payout key", payout, &request.Request{Kind: request.KindBlock}, "block"},
		{"yay ballot", voter, ballot("yay"), ""},
		{"nay ballot", voter, ballot("nay"), "ballot:nay"},
		{"proposals", voter, gen("proposals"), ""},
		{"any ballot", map[string][]string{"generic": {"ballot"}}, ballot("pass"), ""},
		{"generic allowed with no operation", map[string][]string{"generic": {}}, gen("reveal"), "reveal"},
		{"nothing allowed", map[string][]string{}, &request.Request{Kind: request.KindBlock}, "block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			allow := mustNormalize(t, c.allow)
			violation, err := policy.Check(allow, c.req, "tz1who")
			if violation != c.violation {
				t.Fatalf("violation %q, want %q (%v)", violation, c.violation, err)
			}
			if (err == nil) != (c.violation == "") {
				t.Fatalf("error %v for violation %q", err, violation)
			}
			if err != nil && (domain.KindOf(err) != domain.KindForbidden || !strings.Contains(err.Error(), "tz1who") || !strings.Contains(err.Error(), c.violation)) {
				t.Fatalf("refusal %q (kind %v): want forbidden, naming the key and %q", err, domain.KindOf(err), c.violation)
			}
		})
	}
}

func TestCheckChain(t *testing.T) {
	mainnet, _ := request.ParseChainID("NetXdQprcVkpaWU")
	ghostnet, _ := request.ParseChainID("NetXnHfVqm9iesp")
	att := func(c request.ChainID) *request.Request {
		return &request.Request{Kind: request.KindAttestation, OpKind: request.OpAttestation, ChainID: c}
	}
	if err := policy.CheckChain(nil, att(ghostnet), "k"); err != nil {
		t.Fatalf("no list: %v", err)
	}
	if err := policy.CheckChain([]string{"NetXdQprcVkpaWU"}, att(mainnet), "k"); err != nil {
		t.Fatalf("listed chain: %v", err)
	}
	err := policy.CheckChain([]string{"NetXdQprcVkpaWU"}, att(ghostnet), "k")
	if domain.KindOf(err) != domain.KindForbidden || !strings.Contains(err.Error(), "NetXnHfVqm9iesp") {
		t.Fatalf("other chain: %v", err)
	}
	if err := policy.CheckChain([]string{"NetXdQprcVkpaWU"}, &request.Request{Kind: request.KindGeneric, Ops: []string{"reveal"}}, "k"); err != nil {
		t.Fatalf("a generic request carries no chain: %v", err)
	}
}
