package enclave_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	wmem "github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/enclave"
	dguard "github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/domain/request"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestGuardSeated: with domain/guard seated (NewGuard), a session's Sign
// and SignWith go through the guard's policy and watermarks; each refusal
// is an *Error in the guard's wire form, whose message the daemon maps back
// to the refusal's kind (dguard.FromWire); an identical retry returns the
// recorded signature, which verifies independently.
func TestGuardSeated(t *testing.T) {
	rules, err := dguard.ParseRules([]byte(`{"key_types":{"tz1":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	state := wmem.New(wmem.Config{})
	g, err := dguard.New(rules, state, dguard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newEnclave(t, func(cfg *enclave.Config) { cfg.Guard = enclave.NewGuard(g) })
	s := e.NewSession(enclave.Channel{})
	if err := s.Initialize(ctx, cs); err != nil {
		t.Fatal(err)
	}
	k, err := s.GenerateAndImport(ctx, tezos.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	block := rt.Block(rt.Mainnet, 42, 0, 1)
	sig, err := s.Sign(ctx, k.Handle, block, tezos.SignVersionLatest)
	if err != nil || enclavetest.Verify(k.PublicKey, block, sig, tezos.SignVersionLatest) != nil {
		t.Fatalf("a first block: %v %v", sig, err)
	}
	again, err := s.SignWith(ctx, k.Blob, block, tezos.SignVersionLatest)
	if err != nil || !bytes.Equal(again.Bytes, sig.Bytes) {
		t.Fatalf("an identical retry: %v %v", again, err)
	}
	pkh := k.PublicKey.Hash()
	for _, c := range []struct {
		name string
		msg  []byte
		kind domain.Kind
		says string
	}{
		{"a conflicting block", rt.Block(rt.Mainnet, 42, 0, 2), domain.KindConflict, "level 42"},
		{"a block below the mark", rt.Block(rt.Mainnet, 41, 5, 2), domain.KindConflict, "level 41"},
		{"a transfer from a consensus-only key", rt.Generic(1, rt.Transaction(pkh, rt.Originated(3), 1000, 0)), domain.KindForbidden, `"generic" is not allowed`},
		{"an unparseable message", msg, domain.KindInvalid, ""},
	} {
		for _, withBlob := range []bool{false, true} {
			var err error
			if withBlob {
				_, err = s.SignWith(ctx, k.Blob, c.msg, 0)
			} else {
				_, err = s.Sign(ctx, k.Handle, c.msg, 0)
			}
			var ee *enclave.Error
			if !errors.As(err, &ee) || ee.Source == nil || ee.Source.Source != nil {
				t.Fatalf("%s: %v is not a two-message *Error", c.name, err)
			}
			got, ok := dguard.FromWire(ee.Message, ee.Source.Message)
			if !ok || domain.KindOf(got) != c.kind || !dguard.Refused(got) || !strings.Contains(got.Error(), c.says) {
				t.Fatalf("%s: wire %q / %q maps to %v (kind %v), want kind %v naming %q", c.name, ee.Message, ee.Source.Message, got, domain.KindOf(got), c.kind, c.says)
			}
		}
	}
	if recs, err := state.Export(ctx); err != nil || len(recs) != 1 {
		t.Fatalf("%d marks recorded (%v), want 1", len(recs), err)
	}
	// A key with no rule signs nothing.
	bls, err := s.GenerateAndImport(ctx, tezos.BLS)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign(ctx, bls.Handle, block, 7)
	var ee *enclave.Error
	if !errors.As(err, &ee) || !strings.HasPrefix(ee.Message, dguard.WirePrefix) {
		t.Fatalf("a tz4 key without a rule: %v", err)
	}
}

// FuzzGuardSeat drives a guarded session with any sequence of consensus
// requests and transfers, by handle and with the blob, and checks the
// class "no signature leaves unguarded" against a model of the daemon's
// watermark semantics: per request kind, a signature leaves only for a
// (level, round) above every one signed before, or for the identical
// message of the highest (then it is the recorded signature); every other
// request is refused as a conflict, every transfer as forbidden; every
// signature that leaves verifies.
func FuzzGuardSeat(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 1, 1, 2, 0, 0, 2, 1, 1, 0, 3, 0, 0, 0})
	f.Add([]byte{2, 3, 2, 1, 0x82, 3, 2, 1, 2, 3, 1, 1, 2, 2, 2, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4*40 {
			return
		}
		rules, err := dguard.ParseRules([]byte(`{"key_types":{"tz1":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}`))
		if err != nil {
			t.Fatal(err)
		}
		g, err := dguard.New(rules, wmem.New(wmem.Config{}), dguard.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := newEnclave(t, func(cfg *enclave.Config) { cfg.Guard = enclave.NewGuard(g) })
		s := e.NewSession(enclave.Channel{})
		if err := s.Initialize(ctx, cs); err != nil {
			t.Fatal(err)
		}
		k, err := s.GenerateAndImport(ctx, tezos.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		type mark struct {
			level, round int32
			msg          []byte
			sig          string
		}
		high := map[byte]*mark{}
		makers := []func(request.ChainID, int32, int32, byte) []byte{rt.Block, rt.Preattestation, rt.Attestation}
		for i := 0; i+4 <= len(ops); i += 4 {
			kind, level, round, payload := ops[i]&0x7f%4, int32(ops[i+1]%4)+1, int32(ops[i+2]%3), ops[i+3]%3
			withBlob := ops[i]&0x80 != 0
			var msg []byte
			if kind == 3 {
				msg = rt.Generic(payload, rt.Transaction(k.PublicKey.Hash(), rt.Originated(payload), 1, 0))
			} else {
				msg = makers[kind](rt.Mainnet, level, round, payload)
			}
			var sig tezos.Signature
			if withBlob {
				sig, err = s.SignWith(ctx, k.Blob, msg, 0)
			} else {
				sig, err = s.Sign(ctx, k.Handle, msg, 0)
			}
			var wantKind domain.Kind = -1
			var replay *mark
			switch h := high[kind]; {
			case kind == 3:
				wantKind = domain.KindForbidden
			case h == nil || level > h.level || (level == h.level && round > h.round):
			case level == h.level && round == h.round && bytes.Equal(msg, h.msg):
				replay = h
			default:
				wantKind = domain.KindConflict
			}
			if wantKind >= 0 {
				var ee *enclave.Error
				if !errors.As(err, &ee) || ee.Source == nil {
					t.Fatalf("op %d: %v, want a %v refusal", i/4, err, wantKind)
				}
				got, ok := dguard.FromWire(ee.Message, ee.Source.Message)
				if !ok || domain.KindOf(got) != wantKind {
					t.Fatalf("op %d: %q, want a %v refusal", i/4, ee.Error(), wantKind)
				}
				continue
			}
			if err != nil {
				t.Fatalf("op %d (kind %d level %d round %d): %v, want a signature", i/4, kind, level, round, err)
			}
			if err := enclavetest.Verify(k.PublicKey, msg, sig, 0); err != nil {
				t.Fatalf("op %d: %v", i/4, err)
			}
			if replay != nil {
				if sig.String() != replay.sig {
					t.Fatalf("op %d: an identical request got %s, the recorded signature is %s", i/4, sig, replay.sig)
				}
				continue
			}
			high[kind] = &mark{level: level, round: round, msg: msg, sig: sig.String()}
		}
	})
}
