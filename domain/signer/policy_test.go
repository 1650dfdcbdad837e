package signer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// attestation builds a tag-21 attestation sign request (0x13 ‖ chain id ‖
// branch ‖ tag ‖ slot ‖ level ‖ round ‖ payload hash).
func attestation(level, round int32, payload byte) []byte {
	b := []byte{0x13, 0x7a, 0x06, 0xa7, 0x70}
	b = append(b, make([]byte, 32)...) // branch
	b = append(b, 21, 0, 1)            // tag, slot
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	ph := make([]byte, 32)
	ph[0] = payload
	return append(b, ph...)
}

func newPolicyService(t *testing.T, pol map[string]*signer.Policy, auth []tezos.PublicKey) (*signer.Service, *fakeEnclave, *memStore) {
	enc, st := newFakeEnclave(), &memStore{}
	return vaultService(t, enc, st, signer.Options{Policies: pol, AuthorizedKeys: auth, Watermarks: mem.New(mem.Config{})}), enc, st
}

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, nil)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 2)
	require.NoError(t, err)
	listed, unlisted := ks[0].PKH.String(), ks[1].PKH.String()
	allow, _, err := signer.NormalizePolicy(map[string][]string{"generic": {"delegation"}, "endorsement": nil}, nil, nil)
	require.NoError(t, err)
	pols[listed] = &signer.Policy{Allow: allow}

	_, err = s.Sign(ctx, signer.SignRequest{PKH: unlisted, Message: transaction})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, "not listed")

	_, err = s.Sign(ctx, signer.SignRequest{PKH: listed, Message: transaction})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, `operation "transaction" is not allowed`)

	_, err = s.Sign(ctx, signer.SignRequest{PKH: listed, Message: append([]byte{0x11}, make([]byte, 8)...)})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "malformed block is a 400 before policy")

	_, err = s.Sign(ctx, signer.SignRequest{PKH: listed, Message: attestation(10, 0, 1)})
	require.NoError(t, err, "endorsement is Signatory's old name for attestation")

	pols[listed].Allow["generic"] = append(pols[listed].Allow["generic"], "transaction")
	sig, err := s.Sign(ctx, signer.SignRequest{PKH: listed, Message: transaction})
	require.NoError(t, err)
	require.NoError(t, ks[0].PublicKey.Verify(transaction, sig, 2))

	_, _, err = signer.NormalizePolicy(map[string][]string{"generic": {"transfer"}}, nil, nil)
	assert.ErrorContains(t, err, `unknown operation kind "transfer"`)
	_, _, err = signer.NormalizePolicy(map[string][]string{"blocks": nil}, nil, nil)
	assert.ErrorContains(t, err, `unknown request kind "blocks"`)
	legacy, _, err := signer.NormalizePolicy(nil, []string{"generic", "block"}, []string{"transaction"})
	require.NoError(t, err)
	assert.Equal(t, []string{"transaction"}, legacy["generic"])
	assert.Contains(t, legacy, "block")

	_, err = s.ProvePossession(ctx, signer.PossessionRequest{PKH: listed})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

func TestAuthentication(t *testing.T) {
	ctx := context.Background()
	client, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	require.NoError(t, err)
	clientPK, _ := client.Public()
	other, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	svc := vaultService(t, newFakeEnclave(), &memStore{}, signer.Options{
		DefaultPolicy: signer.AllowAll(), AuthorizedKeys: []tezos.PublicKey{clientPK}, Watermarks: mem.New(mem.Config{}),
	})
	ks, err := svc.Generate(ctx, "cs", tezos.P256, 1)
	require.NoError(t, err)
	k := ks[0]
	assert.Equal(t, []tezos.PublicKeyHash{clientPK.Hash()}, svc.AuthorizedKeys())

	_, err = svc.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction})
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err))

	bad, _ := other.Sign(signer.AuthenticationData(k.PKH, transaction), 2)
	_, err = svc.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: bad.String()})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))

	wrongMsg, _ := client.Sign(signer.AuthenticationData(k.PKH, []byte{3, 4}), 2)
	_, err = svc.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: wrongMsg.String()})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))

	good, _ := client.Sign(signer.AuthenticationData(k.PKH, transaction), 2)
	sig, err := svc.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: good.String()})
	require.NoError(t, err)
	require.NoError(t, k.PublicKey.Verify(transaction, sig, 2))
}

func TestWatermark(t *testing.T) {
	ctx := context.Background()
	s, enc, _ := newService(t)
	ks, err := s.Generate(ctx, "cs", tezos.BLS, 1)
	require.NoError(t, err)
	pkh := ks[0].PKH.String()
	sign := func(m []byte) (tezos.Signature, error) {
		return s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: m})
	}
	first, err := sign(attestation(100, 1, 1))
	require.NoError(t, err)
	require.NoError(t, ks[0].PublicKey.Verify(attestation(100, 1, 1), first, 2))

	again, err := sign(attestation(100, 1, 1))
	require.NoError(t, err, "identical retry is answered, not refused")
	assert.Equal(t, first, again)

	for _, m := range [][]byte{attestation(100, 1, 2), attestation(100, 0, 1), attestation(99, 5, 1)} {
		_, err = sign(m)
		assert.Equal(t, domain.KindConflict, domain.KindOf(err))
		assert.ErrorContains(t, err, "level 100 round 1")
	}
	_, err = sign(attestation(100, 2, 1))
	require.NoError(t, err)

	// The enclave is not asked to sign a refused request.
	enc.mu.Lock()
	delete(enc.loaded, ks[0].PKH)
	enc.mu.Unlock()
	_, err = sign(attestation(100, 2, 9))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
}

func TestWatermarkConcurrent(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newService(t)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	pkh := ks[0].PKH.String()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sigs = map[string]int{}
		errs int
	)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sig, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: attestation(7, 0, byte(i))})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				require.Equal(t, domain.KindConflict, domain.KindOf(err), fmt.Sprint(err))
				errs++
				return
			}
			sigs[sig.String()]++
		}()
	}
	wg.Wait()
	assert.Len(t, sigs, 1, "exactly one signature at one level/round")
	assert.Equal(t, 63, errs)
}

// tz4Attestation builds a tag-41 attestation (the tz4-only encoding: no
// slot).
func tz4Attestation(level, round int32, payload byte) []byte {
	b := []byte{0x13, 0x7a, 0x06, 0xa7, 0x70}
	b = append(b, make([]byte, 32)...) // branch
	b = append(b, 41)
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	ph := make([]byte, 32)
	ph[0] = payload
	return append(b, ph...)
}

// The replay identity of a consensus request is the message and the BLS
// signing version: the same attestation asked again with another version
// is refused (409 naming both versions), never answered with a signature
// in the scheme the client did not ask for.
func TestReplayIdentityIncludesVersion(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newService(t)
	ks, err := s.Generate(ctx, "cs", tezos.BLS, 1)
	require.NoError(t, err)
	pkh, pk := ks[0].PKH.String(), ks[0].PublicKey
	v1, v2, latest := tezos.SignVersion1, tezos.SignVersion2, tezos.SignVersionLatest
	msg := tz4Attestation(50, 0, 1)

	first, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg, Version: &v1})
	require.NoError(t, err)
	require.NoError(t, pk.Verify(msg, first, v1))

	again, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg, Version: &v1})
	require.NoError(t, err)
	assert.Equal(t, first, again, "identical request, identical version: replayed")

	for _, v := range []*uint8{&v2, &latest, nil} {
		_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg, Version: v})
		require.Error(t, err)
		assert.Equal(t, domain.KindConflict, domain.KindOf(err))
		assert.ErrorContains(t, err, "signing version 1")
	}

	// And the other way round: signed with the default (2), asked with 1.
	msg2 := tz4Attestation(51, 0, 1)
	sig2, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg2})
	require.NoError(t, err)
	require.NoError(t, pk.Verify(msg2, sig2, v2))
	got, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg2, Version: &latest})
	require.NoError(t, err, "255 is the same scheme as 2")
	assert.Equal(t, sig2, got)
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg2, Version: &v1})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	assert.ErrorContains(t, err, "signing version 2")
}

// The tz4-only consensus encodings (tags 40 and 41) are refused for other
// key types with an error naming the form and the key type.
func TestTz4FormsNeedBLSKey(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newService(t)
	for _, typ := range []tezos.KeyType{tezos.Ed25519, tezos.Secp256k1, tezos.P256} {
		ks, err := s.Generate(ctx, "cs", typ, 1)
		require.NoError(t, err)
		_, err = s.Sign(ctx, signer.SignRequest{PKH: ks[0].PKH.String(), Message: tz4Attestation(5, 0, 1)})
		require.Error(t, err)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
		assert.ErrorContains(t, err, "tz4-only encoding")
		assert.ErrorContains(t, err, typ.String())
	}
}

// NormalizePolicy accepts every name Signatory's configurations use:
// staking pseudo-operations, attestation_with_dal, the older names, and
// operation kinds of earlier protocols (with a warning); allow wins over the
// legacy fields.
func TestNormalizePolicySignatoryNames(t *testing.T) {
	allow, warnings, err := signer.NormalizePolicy(map[string][]string{
		"generic":              {"reveal", "delegation", "transaction", "stake", "unstake", "finalize_unstake", "set_delegate_parameters", "set_deposits_limit", "endorsement", "preendorsement", "tx_rollup_commit"},
		"block":                nil,
		"preendorsement":       nil,
		"endorsement":          nil,
		"attestation_with_dal": nil,
	}, []string{"generic"}, []string{"ballot"})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"block", "preattestation", "attestation", "attestation_with_dal", "generic"}, keysOf(allow))
	assert.Subset(t, allow["generic"], []string{"stake", "unstake", "finalize_unstake", "set_delegate_parameters", "attestation", "preattestation", "set_deposits_limit"})
	assert.NotContains(t, allow["generic"], "ballot", "allow wins: allowed_kinds is ignored")
	assert.Len(t, warnings, 2, "tx_rollup_commit retired, legacy fields ignored: %q", warnings)
}

func keysOf(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A bare entry signs blocks, preattestations and attestations only; an
// attestation with DAL content needs attestation_with_dal; staking needs
// its own names; allowed_chains refuses other chains.
func TestSignatoryPolicySemantics(t *testing.T) {
	ctx := context.Background()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, nil)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 3)
	require.NoError(t, err)
	bare, staker, chained := ks[0].PKH.String(), ks[1].PKH.String(), ks[2].PKH.String()
	pols[bare] = signer.DefaultKeyPolicy()
	allow, _, err := signer.NormalizePolicy(map[string][]string{"generic": {"stake"}, "attestation_with_dal": nil}, nil, nil)
	require.NoError(t, err)
	pols[staker] = &signer.Policy{Allow: allow}
	pols[chained] = &signer.Policy{Allow: map[string][]string{"attestation": nil}, AllowedChains: []string{"NetXnHfVqm9iesp"}}

	sign := func(pkh string, msg []byte) error {
		_, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg})
		return err
	}
	require.NoError(t, sign(bare, attestation(10, 0, 1)))
	err = sign(bare, dalAttestation(11, 0, 1))
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, `"attestation_with_dal" is not allowed`)
	assert.Equal(t, domain.KindForbidden, domain.KindOf(sign(bare, transaction)))

	require.NoError(t, sign(staker, dalAttestation(12, 0, 1)))
	assert.Equal(t, domain.KindForbidden, domain.KindOf(sign(staker, attestation(13, 0, 1))))
	assert.Equal(t, domain.KindForbidden, domain.KindOf(sign(staker, transaction)), "stake does not allow transaction")

	err = sign(chained, attestation(14, 0, 1))
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, "chain NetXdQprcVkpaWU is not allowed")
}

// dalAttestation builds a tag-23 attestation (with DAL content).
func dalAttestation(level, round int32, payload byte) []byte {
	b := attestation(level, round, payload)
	b[37] = 23
	return append(b, 0x01) // dal_attestation: zarith 1
}

// Server-wide and per-key authorized keys: with both set a client must be
// in both lists; with only a per-key list, that list.
func TestAuthorizedKeysBothLists(t *testing.T) {
	ctx := context.Background()
	a, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	b, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	apk, _ := a.Public()
	bpk, _ := b.Public()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, []tezos.PublicKey{apk})
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 2)
	require.NoError(t, err)
	own, open := ks[0], ks[1]
	allow := map[string][]string{"generic": {"transaction"}}
	pols[own.PKH.String()] = &signer.Policy{Allow: allow, AuthorizedKeys: []tezos.PublicKey{bpk}}
	pols[open.PKH.String()] = &signer.Policy{Allow: allow}
	sign := func(k signer.Key, by tezos.PrivateKey) error {
		auth, _ := by.Sign(signer.AuthenticationData(k.PKH, transaction), 2)
		_, err := s.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: auth.String()})
		return err
	}
	require.NoError(t, sign(open, a))
	err = sign(own, b)
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err), "b is not in the server list")
	assert.ErrorContains(t, err, "not from an authorized key")
	assert.ErrorIs(t, err, signer.ErrAuthentication, "a server-level refusal: Signatory's authentication failure")
	err = sign(own, a)
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err), "a is not in the key's list")
	assert.ErrorContains(t, err, "not allowed to use")
	assert.NotErrorIs(t, err, signer.ErrAuthentication, "a policy violation (authentication), as Signatory's matchFilter")
	pols[own.PKH.String()].AuthorizedKeys = []tezos.PublicKey{apk, bpk}
	require.NoError(t, sign(own, a), "a is in both lists")
}

type eventLog struct {
	mu     sync.Mutex
	sign   []ports.SignEvent
	policy []ports.PolicyEvent
	wm     []ports.WatermarkEvent
}

func (e *eventLog) ObserveSign(ev ports.SignEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev.Duration = 0
	e.sign = append(e.sign, ev)
}
func (e *eventLog) ObservePolicy(p ports.PolicyEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policy = append(e.policy, p)
}
func (e *eventLog) ObserveWatermark(w ports.WatermarkEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w.Duration = 0
	e.wm = append(e.wm, w)
}

// TestSignerEvents: the signer reports what Signatory's metrics count, with
// Signatory's values. Every request that passes its policy and the hook
// reaches the signing step: one watermark event (consensus or not) and one
// sign event (its error, a watermark refusal included); policy refusals
// name the refused request kind, operation (ballot:<vote>), "authentication"
// or "policy_hook"; a key not listed, allowed_chains and jwt_users are not
// counted (Signatory does not count them).
func TestSignerEvents(t *testing.T) {
	ctx := context.Background()
	pols := map[string]*signer.Policy{}
	client, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	clientPK, _ := client.Public()
	other, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	otherPK, _ := other.Public()
	hook := &fakeHook{}
	enc := newFakeEnclave()
	s := vaultService(t, enc, &memStore{}, signer.Options{Policies: pols, AuthorizedKeys: []tezos.PublicKey{clientPK},
		Watermarks: mem.New(mem.Config{}), PolicyHook: hook})
	log := &eventLog{}
	s.SetObserver(log)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 5)
	require.NoError(t, err)
	base, staker, chained, restricted, unlisted := ks[0].PKH.String(), ks[1].PKH.String(), ks[2].PKH.String(), ks[3].PKH.String(), ks[4].PKH.String()
	pols[base] = signer.DefaultKeyPolicy()
	pols[base].Allow["pack"] = nil
	pols[base].Allow["attestation_with_dal"] = nil
	pols[staker] = &signer.Policy{Allow: map[string][]string{"generic": {"transaction", "ballot:yay"}}}
	pols[chained] = &signer.Policy{Allow: map[string][]string{"attestation": nil}, AllowedChains: []string{"NetXnHfVqm9iesp"}}
	pols[restricted] = &signer.Policy{Allow: map[string][]string{"generic": {"transaction"}}, AuthorizedKeys: []tezos.PublicKey{otherPK}, JWTUsers: []string{"alice"}}
	sign := func(pkh string, m []byte, user string) {
		h, _ := tezos.ParsePublicKeyHash(pkh)
		auth, _ := client.Sign(signer.AuthenticationData(h, m), tezos.SignVersion2)
		_, _ = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: m, Authentication: auth.String(), User: user})
	}
	const chain = "NetXdQprcVkpaWU"
	sign(base, attestation(5, 3, 1), "")     // signed
	sign(base, attestation(5, 3, 1), "")     // replayed
	sign(base, attestation(5, 2, 9), "")     // 409
	sign(base, dalAttestation(6, 0, 1), "")  // signed
	sign(base, []byte{0x05, 0x00, 0x01}, "") // pack, signed
	sign(base, transaction, "")              // request kind generic refused
	sign(staker, transaction, "")            // signed
	sign(staker, ballotMsg(t, 1, false), "") // ballot:nay refused
	sign(staker, ballotMsg(t, 0, false), "") // ballot:yay signed
	sign(chained, attestation(7, 0, 1), "")  // chain refused: not counted
	sign(restricted, transaction, "bob")     // jwt_users refused: not counted
	sign(restricted, transaction, "alice")   // client not in the key's list: authentication
	sign(unlisted, transaction, "")          // not listed: not counted
	hook.err = domain.Errorf(domain.KindForbidden, "policy hook: no")
	sign(staker, transaction, "") // policy_hook
	hook.err = nil
	enc.mu.Lock()
	loaded := enc.loaded
	enc.loaded = map[tezos.PublicKeyHash]tezos.PrivateKey{} // the enclave lost every key
	enc.mu.Unlock()
	sign(base, attestation(8, 0, 1), "") // vault error after the watermark check
	sign(staker, transaction, "")        // vault error
	enc.mu.Lock()
	enc.loaded = loaded
	enc.mu.Unlock()

	assert.Equal(t, []ports.PolicyEvent{
		{Address: base, Violation: "generic"},
		{Address: staker, Violation: "ballot:nay"},
		{Address: restricted, Violation: ports.ViolationAuthentication},
		{Address: staker, Violation: ports.ViolationPolicyHook},
	}, log.policy)
	assert.Equal(t, []ports.WatermarkEvent{
		{Address: base, Request: "attestation", ChainID: chain, Outcome: ports.WatermarkAccepted},
		{Address: base, Request: "attestation", ChainID: chain, Outcome: ports.WatermarkReplayed},
		{Address: base, Request: "attestation", ChainID: chain, Outcome: ports.WatermarkRejected},
		{Address: base, Request: "attestation_with_dal", ChainID: chain, Outcome: ports.WatermarkAccepted},
		{Address: base, Request: "pack", Outcome: ports.WatermarkNone},
		{Address: staker, Request: "generic", Outcome: ports.WatermarkNone},
		{Address: staker, Request: "generic", Outcome: ports.WatermarkNone},
		{Address: base, Request: "attestation", ChainID: chain, Outcome: ports.WatermarkAccepted},
		{Address: staker, Request: "generic", Outcome: ports.WatermarkNone},
	}, log.wm)
	require.Len(t, log.sign, 9)
	for i, ev := range log.sign {
		fail := i == 2 || i >= 7
		assert.Equal(t, fail, ev.Err != nil, "event %d: %+v", i, ev)
		assert.Equal(t, "cs", ev.Vault, "the vault's display name (here its name: the test vault sets none)")
	}
	assert.Equal(t, domain.KindConflict, domain.KindOf(log.sign[2].Err), "a watermark refusal is the step's error")
	assert.Equal(t, ports.SignEvent{Vault: "cs", Address: base, Request: "attestation", Consensus: true, ChainID: chain, Round: 3}, log.sign[1], "a replay is a signature")
	assert.Equal(t, ports.SignEvent{Vault: "cs", Address: base, Request: "pack"}, log.sign[4])
	assert.Equal(t, map[string]int{"ballot": 1}, log.sign[6].Ops, "signing_ops_total counts the ballot as ballot")
}

// The staking policy decisions of Signatory, key by key: a staking-only key
// never signs a transaction that is not a staking pseudo-operation (to a
// contract or another account, whatever its entrypoint is called), and a
// transfer-only key signs a contract call whose entrypoint is named or
// tagged stake, but not a stake to itself.
func TestStakingPolicies(t *testing.T) {
	ctx := context.Background()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, nil)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 3)
	require.NoError(t, err)
	staking, transfer, both := ks[0], ks[1], ks[2]
	policy := func(ops ...string) *signer.Policy {
		allow, _, err := signer.NormalizePolicy(map[string][]string{"generic": ops}, nil, nil)
		require.NoError(t, err)
		return &signer.Policy{Allow: allow}
	}
	pols[staking.PKH.String()] = policy("stake", "unstake", "finalize_unstake", "set_delegate_parameters")
	pols[transfer.PKH.String()] = policy("transaction")
	pols[both.PKH.String()] = policy("transaction", "stake", "unstake", "finalize_unstake", "set_delegate_parameters")

	kt1 := append([]byte{0x01}, bytes.Repeat([]byte{0x5a}, 20)...)
	kt1 = append(kt1, 0x00)
	other := append([]byte{0x00, 0x01}, bytes.Repeat([]byte{0x77}, 20)...) // a tz2
	named := func(n string) []byte { return append([]byte{0xff, byte(len(n))}, n...) }
	self := func(k signer.Key) []byte { return append([]byte{0x00}, k.PKH.Tagged()...) }
	// tx forges a 1,000 tez transaction from k.
	tx := func(k signer.Key, dest, entrypoint []byte) []byte {
		b := append([]byte{0x03}, bytes.Repeat([]byte{0x01}, 32)...)
		b = append(b, 0x6c)
		b = append(b, k.PKH.Tagged()...)
		b = append(b, 0x8c, 0x0b, 0x01, 0x01, 0x00) // fee, counter, gas, storage
		b = append(b, 0x80, 0xa8, 0xd6, 0xb9, 0x07) // amount 1,000,000,000 mutez
		b = append(b, dest...)
		if entrypoint == nil {
			return append(b, 0x00)
		}
		b = append(b, 0xff)
		b = append(b, entrypoint...)
		return append(b, 0x00, 0x00, 0x00, 0x02, 0x03, 0x0b) // Unit
	}
	cases := []struct {
		name     string
		dest     func(k signer.Key) []byte
		ep       []byte
		staking  bool // signed by the staking-only key
		transfer bool // signed by the transfer-only key
	}{
		{"stake-to-self", self, []byte{6}, true, false},
		{"unstake-to-self", self, []byte{7}, true, false},
		{"finalize-to-self", self, []byte{8}, true, false},
		{"set-delegate-parameters-to-self", self, []byte{9}, true, false},
		{"stake-tag-to-KT1", func(signer.Key) []byte { return kt1 }, []byte{6}, false, true},
		{"stake-named-to-KT1", func(signer.Key) []byte { return kt1 }, named("stake"), false, true},
		{"stake-tag-to-other-account", func(signer.Key) []byte { return other }, []byte{6}, false, true},
		{"stake-named-to-self", self, named("stake"), false, true},
		{"plain-transfer", func(signer.Key) []byte { return other }, nil, false, true},
		{"default-to-self", self, []byte{0}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []struct {
				key  signer.Key
				want bool
			}{{staking, c.staking}, {transfer, c.transfer}, {both, true}} {
				_, err := s.Sign(ctx, signer.SignRequest{PKH: k.key.PKH.String(), Message: tx(k.key, c.dest(k.key), c.ep)})
				if k.want {
					assert.NoError(t, err, "key %s", k.key.PKH)
				} else {
					assert.Equal(t, domain.KindForbidden, domain.KindOf(err), "key %s: %v", k.key.PKH, err)
				}
			}
		})
	}
}

// TestResignSignatoryMark: over a mark recorded with its digest but no
// signature (as Signatory records them; imported here), the identical
// request is signed again (a fresh signature that verifies, the mark
// unchanged), every other request at or below the mark is refused, and a
// higher one is signed and recorded.
func TestResignSignatoryMark(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"attestation", "block"} {
		t.Run(kind, func(t *testing.T) {
			st := mem.New(mem.Config{})
			s := vaultService(t, newFakeEnclave(), &memStore{}, signer.Options{DefaultPolicy: signer.AllowAll(), Watermarks: st})
			ks, err := s.Generate(ctx, "cs", tezos.Secp256k1, 1)
			require.NoError(t, err)
			pkh, pk := ks[0].PKH.String(), ks[0].PublicKey
			msg := func(level, round int32, payload byte) []byte {
				if kind == "block" {
					return blockAt(level, round, payload)
				}
				return attestation(level, round, payload)
			}
			signed := msg(300, 1, 1)
			rec := watermark.Record{Key: watermark.Key{ChainID: "NetXdQprcVkpaWU", PKH: pkh, Kind: kind},
				Mark: watermark.Mark{Level: 300, Round: 1, Digest: tezos.Digest(signed)}}
			require.NoError(t, st.Import(ctx, []watermark.Record{rec}))
			sign := func(m []byte) (tezos.Signature, error) {
				return s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: m})
			}
			for range 2 {
				sig, err := sign(signed)
				require.NoError(t, err, "the very bytes Signatory signed")
				require.NoError(t, pk.Verify(signed, sig, tezos.SignVersion2))
			}
			recs, err := st.Export(ctx)
			require.NoError(t, err)
			require.Len(t, recs, 1)
			assert.Equal(t, rec.Digest, recs[0].Digest)
			assert.Empty(t, recs[0].Signature, "nothing recorded")
			for _, m := range [][]byte{msg(300, 1, 2), msg(300, 0, 3), msg(299, 4, 1)} {
				_, err := sign(m)
				assert.Equal(t, domain.KindConflict, domain.KindOf(err), "%v", err)
			}
			higher := msg(301, 0, 5)
			sig, err := sign(higher)
			require.NoError(t, err)
			require.NoError(t, pk.Verify(higher, sig, tezos.SignVersion2))
		})
	}
}

// blockAt builds a Tenderbake block sign request (0x11 ‖ chain id ‖ shell
// header ‖ protocol data, Octez block_header_repr.ml) at level and fitness
// round, payload hash starting with payload.
func blockAt(level, round int32, payload byte) []byte {
	be := func(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	elem := func(b []byte) []byte { return append(be(int32(len(b))), b...) }
	var fit []byte
	for _, e := range [][]byte{{2}, be(level), nil, be(0), be(round)} {
		fit = append(fit, elem(e)...)
	}
	b := []byte{0x11, 0x7a, 0x06, 0xa7, 0x70}
	b = append(b, be(level)...)
	b = append(b, 1)                         // proto
	b = append(b, make([]byte, 32)...)       // predecessor
	b = append(b, 0, 0, 0, 0, 0x68, 1, 2, 3) // timestamp
	b = append(b, 4)                         // validation passes
	b = append(b, make([]byte, 32)...)       // operations hash
	b = append(b, elem(fit)...)
	b = append(b, make([]byte, 32)...) // context
	ph := make([]byte, 32)
	ph[0] = payload
	b = append(b, ph...)
	b = append(b, be(0)...)           // payload round
	b = append(b, make([]byte, 8)...) // proof of work nonce
	return append(b, 0x00, 0x00)      // no seed nonce hash, per block votes
}
