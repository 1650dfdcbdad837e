package guard_test

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/guard"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// key is a private key held by the test "enclave".
type key struct {
	sk    tezos.PrivateKey
	pk    tezos.PublicKey
	pkh   tezos.PublicKeyHash
	signs atomic.Int64 // signatures the enclave produced with it
}

func newKey(t testing.TB, kt tezos.KeyType) *key {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(kt, nil)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := sk.Public()
	if err != nil {
		t.Fatal(err)
	}
	return &key{sk: sk, pk: pk, pkh: pk.Hash()}
}

// sign is the enclave's signing callback for msg.
func (k *key) sign(msg []byte, version uint8) guard.SignFunc {
	return func() (tezos.Signature, error) {
		k.signs.Add(1)
		return k.sk.Sign(msg, version)
	}
}

func (k *key) req(msg []byte, version uint8) guard.Request {
	return guard.Request{Key: k.pk, Message: msg, Version: version}
}

// do asks g to sign msg with k (version 2).
func (k *key) do(t testing.TB, g *guard.Guard, msg []byte) (guard.Result, error) {
	t.Helper()
	return g.Sign(context.Background(), k.req(msg, tezos.SignVersion2), k.sign(msg, tezos.SignVersion2))
}

// mustSign asks g to sign msg and checks the signature with an independent
// verifier.
func (k *key) mustSign(t testing.TB, g *guard.Guard, msg []byte, want guard.Outcome) tezos.Signature {
	t.Helper()
	res, err := k.do(t, g, msg)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if res.Outcome != want {
		t.Fatalf("outcome %s, want %s", res.Outcome, want)
	}
	if err := enclavetest.Verify(k.pk, msg, res.Signature, tezos.SignVersion2); err != nil {
		t.Fatalf("the signature that left does not verify: %v", err)
	}
	return res.Signature
}

// refused checks that err is a guard refusal of kind want naming each of
// the texts.
func refused(t testing.TB, res guard.Result, err error, want domain.Kind, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("allowed (%s), want a %v refusal", res.Outcome, want)
	}
	if !guard.Refused(err) || domain.KindOf(err) != want {
		t.Fatalf("error %q: refusal %v, kind %v; want a %v refusal", err, guard.Refused(err), domain.KindOf(err), want)
	}
	if len(res.Signature.Bytes) != 0 {
		t.Fatal("a refusal carries a signature")
	}
	if !strings.HasPrefix(err.Error(), "guard: ") {
		t.Fatalf("error %q does not say it is the guard's", err)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not name %q", err, s)
		}
	}
}

func mustRules(t testing.TB, policy string) *guard.Rules {
	t.Helper()
	rs, err := guard.ParseRules([]byte(policy))
	if err != nil {
		t.Fatalf("policy %s: %v", policy, err)
	}
	return rs
}

func newGuard(t testing.TB, policy string, state ports.GuardState) *guard.Guard {
	t.Helper()
	if state == nil {
		state = mem.New(mem.Config{})
	}
	g, err := guard.New(mustRules(t, policy), state, guard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

const consensusTz4 = `{"key_types":{"tz4":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}`

// TestGuardPolicyTable is the guard's policy decision on one message per
// row, for keys with their own rule, keys ruled by their type, and keys
// with no rule. Refused requests are never signed.
func TestGuardPolicyTable(t *testing.T) {
	baker := newKey(t, tezos.BLS)        // key_types.tz4: consensus only
	payout := newKey(t, tezos.Ed25519)   // own rule: transfers to two destinations, reveals
	staker := newKey(t, tezos.Secp256k1) // own rule: the staking operations only
	stranger := newKey(t, tezos.P256)    // no rule
	ownTz4 := newKey(t, tezos.BLS)       // own rule wins over the tz4 rule: attestations only, on mainnet
	friend := newKey(t, tezos.Ed25519)
	exchange := rt.Originated(33)
	policy := fmt.Sprintf(`{
	  "key_types": {"tz4": {"allow": {"block": [], "preattestation": [], "attestation": []}}},
	  "keys": {
	    %q: {"allow": {"generic": ["transaction", "reveal"]}, "transaction_destinations": [%q, %q]},
	    %q: {"allow": {"generic": ["stake", "unstake", "finalize_unstake", "set_delegate_parameters"]}},
	    %q: {"allow": {"attestation": []}, "allowed_chains": ["NetXdQprcVkpaWU"]}
	  }}`, payout.pkh, friend.pkh, exchange, staker.pkh, ownTz4.pkh)
	g := newGuard(t, policy, nil)
	m := rt.Mainnet
	tx := func(from, to *key, entrypoint int) []byte {
		return rt.Generic(1, rt.Transaction(from.pkh, rt.Implicit(to.pkh), 1_000_000_000, entrypoint))
	}
	cases := []struct {
		name    string
		k       *key
		msg     []byte
		refusal domain.Kind // KindInternal: allowed
		texts   []string
	}{
		{"tz4 block", baker, rt.Block(m, 10, 0, 1), domain.KindInternal, nil},
		{"tz4 preattestation (tz4 form)", baker, rt.PreattestationTz4(m, 10, 0, 1), domain.KindInternal, nil},
		{"tz4 attestation (tz4 form)", baker, rt.AttestationTz4(m, 10, 0, 1), domain.KindInternal, nil},
		{"transfer from a consensus-only key", baker, tx(baker, friend, rt.EntrypointNone), domain.KindForbidden, []string{`request kind "generic"`, baker.pkh.String(), "key_types.tz4"}},
		{"delegation from a consensus-only key", baker, rt.Generic(1, rt.Delegation(baker.pkh, friend.pkh)), domain.KindForbidden, []string{"generic"}},
		{"pack from a consensus-only key", baker, []byte{0x05, 0x00, 0x01}, domain.KindForbidden, []string{`"pack"`}},
		{"attestation with DAL not listed", baker, rt.AttestationWithDAL(m, 11, 0, 1), domain.KindForbidden, []string{"attestation_with_dal"}},
		{"transfer to a listed account", payout, tx(payout, friend, rt.EntrypointNone), domain.KindInternal, nil},
		{"transfer to a listed contract", payout, rt.Generic(1, rt.Transaction(payout.pkh, exchange, 5, rt.EntrypointDefault)), domain.KindInternal, nil},
		{"transfer to an unlisted account", payout, tx(payout, stranger, rt.EntrypointNone), domain.KindForbidden, []string{stranger.pkh.String(), "transaction_destinations"}},
		{"batch with one unlisted destination", payout, rt.Generic(1, rt.Transaction(payout.pkh, exchange, 5, rt.EntrypointNone), rt.Transaction(payout.pkh, rt.Originated(34), 5, rt.EntrypointNone)), domain.KindForbidden, []string{"operation #2"}},
		{"delegation from a payout key", payout, rt.Generic(1, rt.Delegation(payout.pkh, friend.pkh)), domain.KindForbidden, []string{`operation "delegation"`}},
		{"block from a payout key", payout, rt.Block(m, 10, 0, 1), domain.KindForbidden, []string{`request kind "block"`}},
		{"stake from a staking key", staker, tx(staker, staker, rt.EntrypointStake), domain.KindInternal, nil},
		{"unstake from a staking key", staker, tx(staker, staker, rt.EntrypointUnstake), domain.KindInternal, nil},
		{"%stake on a KT1 from a staking key", staker, rt.Generic(1, rt.Transaction(staker.pkh, rt.Originated(5), 1_000_000_000, rt.EntrypointStake)), domain.KindForbidden, []string{`operation "transaction"`}},
		{"%stake on another account from a staking key", staker, tx(staker, friend, rt.EntrypointStake), domain.KindForbidden, []string{`operation "transaction"`}},
		{"plain transfer from a staking key", staker, tx(staker, friend, rt.EntrypointNone), domain.KindForbidden, []string{`operation "transaction"`}},
		{"a key with no rule", stranger, rt.Attestation(m, 10, 0, 1), domain.KindForbidden, []string{stranger.pkh.String(), "no rule", "tz3"}},
		{"own tz4 rule: attestation on mainnet", ownTz4, rt.AttestationTz4(m, 10, 0, 1), domain.KindInternal, nil},
		{"own tz4 rule wins: no block", ownTz4, rt.Block(m, 10, 0, 1), domain.KindForbidden, []string{"keys." + ownTz4.pkh.String()}},
		{"own tz4 rule: attestation on ghostnet", ownTz4, rt.AttestationTz4(rt.Ghostnet, 10, 0, 1), domain.KindForbidden, []string{"NetXnHfVqm9iesp", "allowed_chains"}},
		{"malformed message", baker, []byte{0x13, 1, 2}, domain.KindInvalid, []string{"invalid sign request"}},
		{"unknown magic", baker, []byte{0x02, 1, 2}, domain.KindInvalid, []string{"0x02"}},
		{"tz4 form from a tz1 key", payout, rt.AttestationTz4(m, 10, 0, 1), domain.KindInvalid, []string{"tz4-only"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.k.signs.Load()
			res, err := c.k.do(t, g, c.msg)
			if c.refusal == domain.KindInternal {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if err := enclavetest.Verify(c.k.pk, c.msg, res.Signature, tezos.SignVersion2); err != nil {
					t.Fatal(err)
				}
				return
			}
			refused(t, res, err, c.refusal, c.texts...)
			if n := c.k.signs.Load() - before; n != 0 {
				t.Fatalf("a refused request was signed %d times", n)
			}
		})
	}
}

// TestGuardWatermarks: the daemon's semantics, enforced in the enclave.
func TestGuardWatermarks(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	g := newGuard(t, `{"key_types":{"tz1":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}`, nil)
	m := rt.Mainnet

	att := rt.Attestation(m, 100, 0, 1)
	first := k.mustSign(t, g, att, guard.Recorded)
	signs := k.signs.Load()
	// An identical retry gets the recorded signature, and nothing is signed.
	if again := k.mustSign(t, g, att, guard.Replayed); again.String() != first.String() {
		t.Fatal("the retry got another signature")
	}
	if k.signs.Load() != signs {
		t.Fatal("an identical retry was signed again")
	}
	// A conflicting attestation at the same level and round.
	res, err := k.do(t, g, rt.Attestation(m, 100, 0, 2))
	refused(t, res, err, domain.KindConflict, "attestation level 100 round 0 is not above the recorded level 100 round 0", k.pkh.String())
	// Below, refused; above, signed.
	res, err = k.do(t, g, rt.Attestation(m, 99, 5, 1))
	refused(t, res, err, domain.KindConflict)
	k.mustSign(t, g, rt.Attestation(m, 100, 1, 1), guard.Recorded)
	// The DAL form shares the attestation mark.
	res, err = k.do(t, g, rt.AttestationWithDAL(m, 100, 1, 3))
	refused(t, res, err, domain.KindForbidden, "attestation_with_dal") // not allowed by this rule: policy first
	// Kinds and chains are separate marks.
	k.mustSign(t, g, rt.Preattestation(m, 100, 0, 2), guard.Recorded)
	k.mustSign(t, g, rt.Attestation(rt.Ghostnet, 100, 0, 2), guard.Recorded)
	// Blocks: a conflicting block at the same level and round.
	k.mustSign(t, g, rt.Block(m, 200, 1, 1), guard.Recorded)
	res, err = k.do(t, g, rt.Block(m, 200, 1, 2))
	refused(t, res, err, domain.KindConflict, "block level 200 round 1")
	if k.signs.Load() != signs+4 {
		t.Fatalf("%d signatures made, want %d: a refused request was signed", k.signs.Load(), signs+4)
	}
	// Generic requests carry no mark.
	g2 := newGuard(t, fmt.Sprintf(`{"keys":{%q:{"allow":{"generic":["reveal","delegation"]}}}}`, k.pkh), nil)
	msg := rt.Generic(1, rt.Delegation(k.pkh, k.pkh))
	k.mustSign(t, g2, msg, guard.Signed)
	k.mustSign(t, g2, msg, guard.Signed)
}

// TestGuardBLSVersions: a BLS signature is recorded for the version asked;
// the identical request under the other version is refused (it would be a
// second signature at that level and round), version 0 is invalid.
func TestGuardBLSVersions(t *testing.T) {
	k := newKey(t, tezos.BLS)
	g := newGuard(t, consensusTz4, nil)
	msg := rt.AttestationTz4(rt.Mainnet, 7, 0, 1)
	res, err := g.Sign(context.Background(), k.req(msg, tezos.SignVersion1), k.sign(msg, tezos.SignVersion1))
	if err != nil {
		t.Fatal(err)
	}
	if err := enclavetest.Verify(k.pk, msg, res.Signature, tezos.SignVersion1); err != nil {
		t.Fatal(err)
	}
	res, err = g.Sign(context.Background(), k.req(msg, tezos.SignVersion1), k.sign(msg, tezos.SignVersion1))
	if err != nil || res.Outcome != guard.Replayed {
		t.Fatalf("retry with version 1: %v %v", res.Outcome, err)
	}
	res, err = g.Sign(context.Background(), k.req(msg, tezos.SignVersionLatest), k.sign(msg, tezos.SignVersionLatest))
	refused(t, res, err, domain.KindConflict, "version 1")
	if !errors.Is(err, watermark.ErrVersionMismatch) {
		t.Fatalf("%v: no ErrVersionMismatch in the chain", err)
	}
	msg0 := rt.AttestationTz4(rt.Mainnet, 8, 0, 1)
	res, err = g.Sign(context.Background(), k.req(msg0, 0), k.sign(msg0, 0))
	refused(t, res, err, domain.KindInvalid, "signing version 0")
}

// faultyState wraps a state: Commit can fail, return what another enclave
// recorded, or block; Check can block.
type faultyState struct {
	ports.GuardState
	commitErr   error
	commitAs    func(watermark.Mark) watermark.Mark // what "another enclave" recorded
	block       bool
	checks      atomic.Int64
	commits     atomic.Int64
	commitDelay time.Duration
}

func (s *faultyState) Check(ctx context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	s.checks.Add(1)
	if s.block {
		<-ctx.Done()
		return watermark.Mark{}, false, domain.Errorf(domain.KindUnavailable, "state: %w", ctx.Err())
	}
	return s.GuardState.Check(ctx, k)
}

func (s *faultyState) Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	s.commits.Add(1)
	if s.commitDelay > 0 {
		select {
		case <-time.After(s.commitDelay):
		case <-ctx.Done():
			return watermark.Mark{}, domain.Errorf(domain.KindUnavailable, "state: %w", ctx.Err())
		}
	}
	if s.commitErr != nil {
		return watermark.Mark{}, s.commitErr
	}
	if s.commitAs != nil {
		other := s.commitAs(m)
		if _, err := s.GuardState.Commit(ctx, k, other); err != nil {
			return watermark.Mark{}, err
		}
		return s.GuardState.Commit(ctx, k, m)
	}
	return s.GuardState.Commit(ctx, k, m)
}

// TestGuardCommitFailure: when the mark cannot be recorded, the signature
// made does not leave; the next request decides on what was recorded.
func TestGuardCommitFailure(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	st := &faultyState{GuardState: mem.New(mem.Config{}), commitErr: errors.New("firestore: connection refused")}
	g := newGuard(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`, st)
	msg := rt.Attestation(rt.Mainnet, 5, 0, 1)
	res, err := k.do(t, g, msg)
	refused(t, res, err, domain.KindUnavailable, "recording its mark failed, so no signature leaves the enclave", "connection refused")
	if k.signs.Load() != 1 {
		t.Fatalf("%d signatures made", k.signs.Load())
	}
	// A commit that is itself refused as a conflict is a conflict.
	st.commitErr = domain.Errorf(domain.KindConflict, "attestation level 5 round 0 is not above the recorded level 5 round 0")
	res, err = k.do(t, g, msg)
	refused(t, res, err, domain.KindConflict, "not above")
	// Back: the request is signed and recorded.
	st.commitErr = nil
	k.mustSign(t, g, msg, guard.Recorded)
}

// TestGuardAnotherEnclaveFirst: the state says another enclave recorded
// the identical request first: its signature is returned (it verifies), and
// ours does not leave; a recorded signature that does not verify for this
// request is refused.
func TestGuardAnotherEnclaveFirst(t *testing.T) {
	k := newKey(t, tezos.P256)
	msg := rt.Attestation(rt.Mainnet, 9, 0, 1)
	ours, err := k.sk.Sign(msg, tezos.SignVersion2)
	if err != nil {
		t.Fatal(err)
	}
	// Another enclave's signature of the same message: the other valid
	// ECDSA signature (r, n−s), as a signer that does not normalise S
	// makes it.
	n := elliptic.P256().Params().N
	s := new(big.Int).Sub(n, new(big.Int).SetBytes(ours.Bytes[32:]))
	theirs := tezos.Signature{Type: tezos.P256, Bytes: append(bytes.Clone(ours.Bytes[:32]), s.FillBytes(make([]byte, 32))...)}
	if err := enclavetest.Verify(k.pk, msg, theirs, 2); err != nil || theirs.String() == ours.String() {
		t.Fatalf("their signature: %v", err)
	}
	st := &faultyState{GuardState: mem.New(mem.Config{}), commitAs: func(m watermark.Mark) watermark.Mark {
		m.Signature = theirs.String()
		return m
	}}
	g := newGuard(t, `{"key_types":{"tz3":{"allow":{"attestation":[]}}}}`, st)
	res, err := k.do(t, g, msg)
	if err != nil || res.Outcome != guard.Replayed || res.Signature.String() != theirs.String() {
		t.Fatalf("got %s %v, want their recorded signature", res.Outcome, err)
	}
	// A recorded "signature" that is not one of this message.
	k2 := newKey(t, tezos.Ed25519)
	bogus := tezos.Signature{Type: tezos.Ed25519, Bytes: make([]byte, 64)}
	st2 := &faultyState{GuardState: mem.New(mem.Config{}), commitAs: func(m watermark.Mark) watermark.Mark {
		m.Signature = bogus.String()
		return m
	}}
	g2 := newGuard(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`, st2)
	res, err = k2.do(t, g2, msg)
	refused(t, res, err, domain.KindConflict, "does not verify")
}

// TestGuardTimeout: a state that does not answer fails the request as
// unavailable once the guard's timeout has passed (no signature); a state
// slower than the timeout on commit too; a guard left idle for longer than
// its timeout still serves.
func TestGuardTimeout(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	st := &faultyState{GuardState: mem.New(mem.Config{}), block: true}
	timeout := 150 * time.Millisecond
	g, err := guard.New(mustRules(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`), st, guard.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := k.do(t, g, rt.Attestation(rt.Mainnet, 1, 0, 1))
	refused(t, res, err, domain.KindUnavailable, "reading its mark failed")
	if d := time.Since(start); d < timeout {
		t.Fatalf("gave up after %v, before the timeout %v", d, timeout)
	}
	if k.signs.Load() != 0 {
		t.Fatal("signed without reading the mark")
	}
	// The commit takes longer than the timeout: the signature made does not leave.
	st.block, st.commitDelay = false, 3*timeout
	res, err = k.do(t, g, rt.Attestation(rt.Mainnet, 2, 0, 1))
	refused(t, res, err, domain.KindUnavailable, "recording its mark failed")
	// Idle for longer than the timeout, then fast: served.
	st.commitDelay = 0
	time.Sleep(2 * timeout)
	k.mustSign(t, g, rt.Attestation(rt.Mainnet, 3, 0, 1), guard.Recorded)
	// The caller's own deadline bounds the guard too.
	st.block = true
	ctx, cancel := context.WithTimeout(context.Background(), timeout/3)
	defer cancel()
	start = time.Now()
	msg := rt.Attestation(rt.Mainnet, 4, 0, 1)
	_, err = g.Sign(ctx, k.req(msg, 2), k.sign(msg, 2))
	if domain.KindOf(err) != domain.KindUnavailable || time.Since(start) >= timeout {
		t.Fatalf("with a shorter caller deadline: %v after %v", err, time.Since(start))
	}
}

// TestGuardSignatoryMarks: marks recorded without a signature (Signatory's,
// or imported without one) are enforced as the daemon enforces them: the
// very message is signed again (the mark left as it is), another message
// at that position is refused, and an unsigned block mark covers its
// whole level.
func TestGuardSignatoryMarks(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	st := mem.New(mem.Config{})
	m := rt.Mainnet
	att := rt.Attestation(m, 50, 1, 1)
	blk := rt.Block(m, 60, 0, 1)
	chain := m.String()
	if err := st.Import(context.Background(), []watermark.Record{
		{Key: watermark.Key{ChainID: chain, PKH: k.pkh.String(), Kind: "attestation"}, Mark: watermark.Mark{Level: 50, Round: 1, Digest: tezos.Digest(att)}},
		{Key: watermark.Key{ChainID: chain, PKH: k.pkh.String(), Kind: "block"}, Mark: watermark.Mark{Level: 60, Round: 0, Digest: tezos.Digest(blk)}},
	}); err != nil {
		t.Fatal(err)
	}
	g := newGuard(t, `{"key_types":{"tz1":{"allow":{"block":[],"attestation":[]}}}}`, st)
	k.mustSign(t, g, att, guard.Recorded)
	k.mustSign(t, g, att, guard.Recorded) // signed again each time: nothing recorded to replay
	if k.signs.Load() != 2 {
		t.Fatalf("%d signatures", k.signs.Load())
	}
	recs, _ := st.Export(context.Background())
	for _, r := range recs {
		if r.Signature != "" {
			t.Fatalf("the unsigned mark was changed: %+v", r)
		}
	}
	res, err := k.do(t, g, rt.Attestation(m, 50, 1, 2))
	refused(t, res, err, domain.KindConflict)
	// The block mark (Signatory's payload round) covers level 60.
	res, err = k.do(t, g, rt.Block(m, 60, 3, 2))
	refused(t, res, err, domain.KindConflict)
	k.mustSign(t, g, rt.Block(m, 61, 0, 2), guard.Recorded)
}

// TestGuardOneSignatureUnderContention: 64 conflicting attestations at one
// level and round, at once on one guard: exactly one signature leaves.
func TestGuardOneSignatureUnderContention(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	g := newGuard(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`, nil)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := k.do(t, g, rt.Attestation(rt.Mainnet, 77, 0, byte(i)))
			switch {
			case err == nil:
				ok.Add(1)
				if res.Outcome != guard.Recorded {
					t.Errorf("outcome %s", res.Outcome)
				}
			case domain.KindOf(err) != domain.KindConflict:
				t.Errorf("unexpected %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || k.signs.Load() != 1 {
		t.Fatalf("%d signatures left, %d made; want exactly 1", ok.Load(), k.signs.Load())
	}
}

// TestGuardSignError: an error of the sign callback is returned as it is,
// not as a refusal, and nothing is recorded.
func TestGuardSignError(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	st := &faultyState{GuardState: mem.New(mem.Config{})}
	g := newGuard(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`, st)
	boom := errors.New("signer error")
	msg := rt.Attestation(rt.Mainnet, 1, 0, 1)
	_, err := g.Sign(context.Background(), k.req(msg, 2), func() (tezos.Signature, error) { return tezos.Signature{}, boom })
	if !errors.Is(err, boom) || guard.Refused(err) {
		t.Fatalf("got %v", err)
	}
	// A signature of another type is not recorded either.
	_, err = g.Sign(context.Background(), k.req(msg, 2), func() (tezos.Signature, error) {
		return tezos.Signature{Type: tezos.BLS, Bytes: make([]byte, 96)}, nil
	})
	if err == nil || st.commits.Load() != 0 {
		t.Fatalf("got %v after %d commits", err, st.commits.Load())
	}
}

// TestGuardWire: every refusal kind crosses the wire and maps back to its
// kind, with its text; other errors and other messages are not refusals.
func TestGuardWire(t *testing.T) {
	k := newKey(t, tezos.Ed25519)
	g := newGuard(t, `{"key_types":{"tz1":{"allow":{"attestation":[]}}}}`, &faultyState{GuardState: mem.New(mem.Config{}), commitErr: errors.New("down")})
	cases := map[domain.Kind][]byte{
		domain.KindForbidden:   rt.Block(rt.Mainnet, 1, 0, 1),
		domain.KindInvalid:     {0x13},
		domain.KindUnavailable: rt.Attestation(rt.Mainnet, 1, 0, 1),
	}
	for want, msg := range cases {
		_, err := k.do(t, g, msg)
		message, detail, ok := guard.WireMessage(err)
		if !ok || message != guard.WirePrefix+want.String() || detail != err.Error() {
			t.Fatalf("%v: wire %q %q %v", err, message, detail, ok)
		}
		back, ok := guard.FromWire(message, detail)
		if !ok || domain.KindOf(back) != want || back.Error() != err.Error() || !guard.Refused(back) {
			t.Fatalf("back from the wire: %v (%v), want %v", back, domain.KindOf(back), want)
		}
	}
	if k, ok := guard.KindOfWire(guard.WirePrefix + "conflict"); !ok || k != domain.KindConflict {
		t.Fatal("conflict does not map back")
	}
	for _, m := range []string{"signer error", "guard refused: internal", "guard refused: ", "guard refused: forbiddenx", "uninitialized"} {
		if _, ok := guard.KindOfWire(m); ok {
			t.Fatalf("%q maps to a refusal", m)
		}
	}
	if _, _, ok := guard.WireMessage(errors.New("signer error")); ok {
		t.Fatal("a plain error is sent as a refusal")
	}
	long, _ := guard.FromWire(guard.WirePrefix+"forbidden", strings.Repeat("x", 5000))
	if len(long.Error()) > guard.MaxWireDetail+32 {
		t.Fatalf("a long detail is kept whole (%d bytes)", len(long.Error()))
	}
}

func TestGuardNew(t *testing.T) {
	if _, err := guard.New(&guard.Rules{}, mem.New(mem.Config{}), guard.Options{}); err == nil {
		t.Fatal("empty rules accepted")
	}
	if _, err := guard.New(mustRules(t, consensusTz4), nil, guard.Options{}); err == nil {
		t.Fatal("no state accepted")
	}
	if _, err := guard.New(mustRules(t, consensusTz4), mem.New(mem.Config{}), guard.Options{Timeout: -1}); err == nil {
		t.Fatal("negative timeout accepted")
	}
}
