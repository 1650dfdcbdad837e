package requesttest_test

import (
	"slices"
	"testing"

	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestBuilders: every builder's message parses as what it claims to be.
func TestBuilders(t *testing.T) {
	src := tezos.PublicKeyHash{Type: tezos.Ed25519, Hash: [20]byte{1}}
	other := tezos.PublicKeyHash{Type: tezos.BLS, Hash: [20]byte{2}}
	c := requesttest.Mainnet
	cases := []struct {
		name   string
		msg    []byte
		kind   string
		level  int32
		round  int32
		ops    []string
		dests  []request.Contract
		tz4    bool
		policy string
	}{
		{"block", requesttest.Block(c, 100, 2, 1), "block", 100, 2, nil, nil, false, "block"},
		{"preattestation", requesttest.Preattestation(c, 101, 0, 1), "preattestation", 101, 0, nil, nil, false, "preattestation"},
		{"attestation", requesttest.Attestation(c, 102, 1, 1), "attestation", 102, 1, nil, nil, false, "attestation"},
		{"attestation with DAL", requesttest.AttestationWithDAL(c, 102, 1, 1), "attestation", 102, 1, nil, nil, false, "attestation_with_dal"},
		{"tz4 preattestation", requesttest.PreattestationTz4(c, 103, 3, 1), "preattestation", 103, 3, nil, nil, true, "preattestation"},
		{"tz4 attestation", requesttest.AttestationTz4(c, 104, 4, 1), "attestation", 104, 4, nil, nil, true, "attestation"},
		{"transfer", requesttest.Generic(1, requesttest.Transaction(src, requesttest.Implicit(other), 1_000_000_000, requesttest.EntrypointNone)),
			"generic", 0, 0, []string{"transaction"}, []request.Contract{requesttest.Implicit(other)}, false, "generic"},
		{"stake to self", requesttest.Generic(1, requesttest.Transaction(src, requesttest.Implicit(src), 5, requesttest.EntrypointStake)),
			"generic", 0, 0, []string{"stake"}, []request.Contract{requesttest.Implicit(src)}, false, "generic"},
		{"%stake on a KT1", requesttest.Generic(1, requesttest.Transaction(src, requesttest.Originated(9), 1_000_000_000, requesttest.EntrypointStake)),
			"generic", 0, 0, []string{"transaction"}, []request.Contract{requesttest.Originated(9)}, false, "generic"},
		{"delegation and transfer", requesttest.Generic(2, requesttest.Delegation(src, other), requesttest.Transaction(src, requesttest.Originated(3), 1, requesttest.EntrypointDefault)),
			"generic", 0, 0, []string{"delegation", "transaction"}, []request.Contract{{}, requesttest.Originated(3)}, false, "generic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := request.Parse(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Kind) != tc.kind || r.Level != tc.level || r.Round != tc.round || r.BLSMode != tc.tz4 || r.PolicyKind() != tc.policy {
				t.Fatalf("parsed %+v", r)
			}
			if !slices.Equal(r.Ops, tc.ops) || !slices.Equal(r.Destinations, tc.dests) {
				t.Fatalf("ops %v destinations %v, want %v %v", r.Ops, r.Destinations, tc.ops, tc.dests)
			}
			if r.HasWatermark() && r.ChainID != c {
				t.Fatalf("chain %s", r.ChainID)
			}
		})
	}
	if slices.Equal(requesttest.Attestation(c, 1, 0, 1), requesttest.Attestation(c, 1, 0, 2)) {
		t.Fatal("the payload byte does not change the message")
	}
}
