package tezos_test

import (
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// benchMessage is the size of a typical attestation payload.
var benchMessage = append([]byte{0x13, 0x7a, 0x06, 0xa7, 0x70}, make([]byte, 80)...)

func BenchmarkSign(b *testing.B) {
	for _, kt := range tezos.KeyTypes {
		b.Run(kt.String(), func(b *testing.B) {
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sk.Sign(benchMessage, tezos.SignVersionLatest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, kt := range tezos.KeyTypes {
		b.Run(kt.String(), func(b *testing.B) {
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			if err != nil {
				b.Fatal(err)
			}
			pk, err := sk.Public()
			if err != nil {
				b.Fatal(err)
			}
			sig, err := sk.Sign(benchMessage, tezos.SignVersionLatest)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := pk.Verify(benchMessage, sig, tezos.SignVersionLatest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifier is the verification the enclave client runs on every
// signature: the key parsed (and, for BLS, validated) once per key.
func BenchmarkVerifier(b *testing.B) {
	for _, kt := range tezos.KeyTypes {
		b.Run(kt.String(), func(b *testing.B) {
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			if err != nil {
				b.Fatal(err)
			}
			pk, err := sk.Public()
			if err != nil {
				b.Fatal(err)
			}
			v, err := tezos.NewVerifier(pk)
			if err != nil {
				b.Fatal(err)
			}
			sig, err := sk.Sign(benchMessage, tezos.SignVersionLatest)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(benchMessage, sig, tezos.SignVersionLatest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
