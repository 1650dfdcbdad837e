package harness

import (
	"context"
	"testing"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Sealer seals a key's plaintext as a KMS stand-in does
// (adapters/kms/localstandin, passthroughstandin).
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
}

// SealKey creates a key of type kt, seals it as the enclave does (the CBOR
// private key map, sealed by kms) and puts it in st, so that a daemon
// started on st with an enclave using the same KMS loads it. It returns the
// key's public key; the private key is wiped.
func SealKey(t testing.TB, kms Sealer, st ports.KeyStore, kt tezos.KeyType) tezos.PublicKey {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(kt, nil)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := sk.Public()
	if err != nil {
		t.Fatal(err)
	}
	w, err := enclavewire.NewPrivateKey(sk)
	sk.Zero()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := enclavewire.MarshalPrivateKey(w)
	w.Zero()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := kms.Seal(plain)
	clear(plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), ports.StoredKey{PKH: pk.Hash().String(), Blob: blob}); err != nil {
		t.Fatal(err)
	}
	return pk
}
