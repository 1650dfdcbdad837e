package signer_test

import (
	"context"
	"testing"

	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// BenchmarkSignGenericParallel measures the service's own cost of a sign
// request (authentication, classification, policy, observation) with an
// enclave that answers at once: the part a reload's snapshot switch sits
// on. Parallel, as under load.
func BenchmarkSignGenericParallel(b *testing.B) {
	ctx := context.Background()
	enc, st := newFakeEnclave(), &memStore{}
	probe, err := signer.New([]signer.Vault{{Name: "cs", Enclave: enc, Store: st}}, signer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ks, err := probe.Generate(ctx, "cs", tezos.Ed25519, 1)
	if err != nil {
		b.Fatal(err)
	}
	fast := &fixedSigEnclave{fakeEnclave: enc}
	sig, err := enc.Sign(ctx, ks[0].PKH, transaction, tezos.SignVersion2)
	if err != nil {
		b.Fatal(err)
	}
	fast.sig = sig
	s, err := signer.New([]signer.Vault{{Name: "cs", Enclave: fast, Store: st}},
		signer.Options{Policies: map[string]*signer.Policy{ks[0].Address: {Allow: map[string][]string{"generic": {"transaction"}}}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Load(ctx); err != nil {
		b.Fatal(err)
	}
	req := signer.SignRequest{PKH: ks[0].Address, Message: transaction}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Sign(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// fixedSigEnclave answers every signature with sig.
type fixedSigEnclave struct {
	*fakeEnclave
	sig tezos.Signature
}

func (e *fixedSigEnclave) Sign(context.Context, tezos.PublicKeyHash, []byte, uint8) (tezos.Signature, error) {
	return e.sig, nil
}
