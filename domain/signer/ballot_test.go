package signer_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// ballotMsg is a generic request holding a ballot (tag 6: source, period,
// proposal, vote 0 yay / 1 nay / 2 pass), optionally after a proposals
// operation (tag 5).
func ballotMsg(t *testing.T, vote byte, withProposals bool) []byte {
	t.Helper()
	src := "00" + strings.Repeat("0a", 20)
	h := "03" + strings.Repeat("01", 32)
	if withProposals {
		h += "05" + src + "00000077" + "00000020" + strings.Repeat("44", 32)
	}
	h += "06" + src + "00000078" + strings.Repeat("44", 32) + hex.EncodeToString([]byte{vote})
	b, err := hex.DecodeString(h)
	require.NoError(t, err)
	return b
}

// TestBallotVotes checks Signatory's per-vote ballot kinds (its
// matchFilter): a ballot is allowed when the generic list names `ballot`
// or `ballot:<its vote>`; a refusal names the ballot with its vote.
func TestBallotVotes(t *testing.T) {
	ctx := context.Background()
	type msg struct {
		vote          byte
		withProposals bool
	}
	yay, nay, pass := msg{0, false}, msg{1, false}, msg{2, false}
	batchNay := msg{1, true}
	cases := []struct {
		generic []string
		allowed []msg
		refused map[msg]string // message → the operation the refusal names
	}{
		{[]string{"ballot"}, []msg{yay, nay, pass}, map[msg]string{batchNay: "proposals"}},
		{[]string{"ballot:yay"}, []msg{yay}, map[msg]string{nay: "ballot:nay", pass: "ballot:pass", batchNay: "proposals"}},
		{[]string{"ballot:yay", "ballot:pass"}, []msg{yay, pass}, map[msg]string{nay: "ballot:nay"}},
		{[]string{"ballot:nay", "proposals"}, []msg{nay, batchNay}, map[msg]string{yay: "ballot:yay", pass: "ballot:pass"}},
		{[]string{"ballot", "ballot:nay"}, []msg{yay, nay, pass}, nil},
		{[]string{"proposals"}, nil, map[msg]string{yay: "ballot:yay", batchNay: "ballot:nay"}},
		{[]string{}, nil, map[msg]string{pass: "ballot:pass", batchNay: "proposals"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.generic, ","), func(t *testing.T) {
			allow, _, err := signer.NormalizePolicy(map[string][]string{"generic": c.generic}, nil, nil)
			require.NoError(t, err)
			pols := map[string]*signer.Policy{}
			s, _, _ := newPolicyService(t, pols, nil)
			ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
			require.NoError(t, err)
			pols[ks[0].PKH.String()] = &signer.Policy{Allow: allow}
			for _, m := range c.allowed {
				b := ballotMsg(t, m.vote, m.withProposals)
				sig, err := s.Sign(ctx, signer.SignRequest{PKH: ks[0].PKH.String(), Message: b})
				require.NoError(t, err, "vote %d", m.vote)
				require.NoError(t, ks[0].PublicKey.Verify(b, sig, tezos.SignVersion2))
			}
			for m, op := range c.refused {
				_, err := s.Sign(ctx, signer.SignRequest{PKH: ks[0].PKH.String(), Message: ballotMsg(t, m.vote, m.withProposals)})
				assert.Equal(t, domain.KindForbidden, domain.KindOf(err), "vote %d", m.vote)
				assert.ErrorContains(t, err, `operation "`+op+`" is not allowed`)
			}
		})
	}
}

// TestPolicyNames checks the names a policy may use: Signatory's (ballot
// votes, pack, signature_prefix), Sigil's older ones, and refusals that
// name what was wrong.
func TestPolicyNames(t *testing.T) {
	for _, c := range []struct {
		allow   map[string][]string
		want    map[string][]string // normalized, when loading succeeds
		warning string
		err     string
	}{
		{allow: map[string][]string{"generic": {"ballot:yay", "ballot:pass"}}, want: map[string][]string{"generic": {"ballot:yay", "ballot:pass"}}},
		{allow: map[string][]string{"generic": {"ballot:nay", "ballot"}}, want: map[string][]string{"generic": {"ballot:nay", "ballot"}}},
		{allow: map[string][]string{"pack": nil}, want: map[string][]string{"pack": {}}},
		{allow: map[string][]string{"micheline": nil}, want: map[string][]string{"pack": {}}},
		{allow: map[string][]string{"generic": {"signature_prefix"}}, want: map[string][]string{"generic": {"signature_prefix"}}, warning: "matches nothing"},
		{allow: map[string][]string{"generic": {"ballot:maybe"}}, err: `invalid operation kind "ballot:maybe": only ballot takes a sub-kind, its vote (ballot:yay, ballot:nay, ballot:pass)`},
		{allow: map[string][]string{"generic": {"ballot:"}}, err: `invalid operation kind "ballot:"`},
		{allow: map[string][]string{"generic": {"transaction:yay"}}, err: `invalid operation kind "transaction:yay"`},
		{allow: map[string][]string{"generic": {"ballots"}}, err: `unknown operation kind "ballots"`},
		{allow: map[string][]string{"packed": nil}, err: `unknown request kind "packed"`},
	} {
		got, warnings, err := signer.NormalizePolicy(c.allow, nil, nil)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, "%v", c.allow)
			continue
		}
		require.NoError(t, err, "%v", c.allow)
		assert.Equal(t, c.want, got, "%v", c.allow)
		if c.warning != "" {
			require.Len(t, warnings, 1)
			assert.Contains(t, warnings[0], c.warning)
		}
	}
}

// TestPackPolicy signs packed Micheline data under `pack` (and Sigil's older
// name micheline), and refuses it under generic only.
func TestPackPolicy(t *testing.T) {
	ctx := context.Background()
	data := []byte{0x05, 0x01, 0, 0, 0, 2, 'h', 'i'}
	for _, c := range []struct {
		kind string
		ok   bool
	}{{"pack", true}, {"micheline", true}, {"generic", false}} {
		allow, _, err := signer.NormalizePolicy(map[string][]string{c.kind: nil}, nil, nil)
		require.NoError(t, err)
		pols := map[string]*signer.Policy{}
		s, _, _ := newPolicyService(t, pols, nil)
		ks, err := s.Generate(ctx, "cs", tezos.Secp256k1, 1)
		require.NoError(t, err)
		pols[ks[0].PKH.String()] = &signer.Policy{Allow: allow}
		sig, err := s.Sign(ctx, signer.SignRequest{PKH: ks[0].PKH.String(), Message: data})
		if !c.ok {
			assert.ErrorContains(t, err, `request kind "pack" is not allowed`)
			continue
		}
		require.NoError(t, err, c.kind)
		require.NoError(t, ks[0].PublicKey.Verify(data, sig, tezos.SignVersion2))
		_, err = s.Sign(ctx, signer.SignRequest{PKH: ks[0].PKH.String(), Message: append(data, 0)})
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "trailing bytes after the expression")
	}
}
