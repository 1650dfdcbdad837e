package firestore

import (
	"context"
	"testing"

	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain/guard"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// BenchmarkGuardSign is one guarded block signature end to end inside the
// enclave (classification, policy, the BLS signature, the commit of its
// mark to Firestore), rising levels of one tz4 key; "off" signs the same
// messages without the guard, in the same run.
func BenchmarkGuardSign(b *testing.B) {
	sk, err := tezos.GeneratePrivateKey(tezos.BLS, nil)
	if err != nil {
		b.Fatal(err)
	}
	pk, err := sk.Public()
	if err != nil {
		b.Fatal(err)
	}
	msgs := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = rt.Block(rt.Mainnet, int32(i+1), 0, byte(i))
		}
		return out
	}
	b.Run("off", func(b *testing.B) {
		ms := msgs(b.N)
		b.ResetTimer()
		for i := range b.N {
			if _, err := sk.Sign(ms[i], tezos.SignVersionLatest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("on", func(b *testing.B) {
		rules, err := guard.ParseRules([]byte(`{"key_types":{"tz4":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}`))
		if err != nil {
			b.Fatal(err)
		}
		g, err := guard.New(rules, newState(b, Config{Project: newProject(b)}), guard.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ms := msgs(b.N)
		b.ResetTimer()
		for i := range b.N {
			if _, err := g.Sign(context.Background(), guard.Request{Key: pk, Message: ms[i], Version: tezos.SignVersionLatest},
				func() (tezos.Signature, error) { return sk.Sign(ms[i], tezos.SignVersionLatest) }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGuardCommitParallel: commits from parallel goroutines, each on a
// key of its own (a baker with many keys).
func BenchmarkGuardCommitParallel(b *testing.B) {
	watermarktest.BenchmarkCommitParallel(b, storeOf(newState(b, Config{Project: newProject(b)})))
}
