package ports

import (
	"context"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// SealedKey is a key as the enclave hands it out: its public key and the
// private key sealed (encrypted) so that only the enclave can open it.
type SealedKey struct {
	PublicKey tezos.PublicKey
	Blob      []byte
}

// Enclave is a trusted execution environment that holds private keys and
// signs with them. Keys are addressed by their public key hash once they have
// been loaded; how the enclave tracks them (handles, connections) is the
// adapter's business.
type Enclave interface {
	// Load opens a sealed blob inside the enclave so the key can sign, and
	// returns its public key.
	Load(ctx context.Context, blob []byte) (tezos.PublicKey, error)
	// Generate creates a key of type t inside the enclave, loads it and
	// returns it sealed.
	Generate(ctx context.Context, t tezos.KeyType) (SealedKey, error)
	// Import seals a plain private key inside the enclave and loads it. The
	// caller should zero sk afterwards.
	Import(ctx context.Context, sk tezos.PrivateKey) (SealedKey, error)
	// Sign signs msg with a loaded key. version is the BLS signing version.
	Sign(ctx context.Context, key tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error)
	// ProvePossession returns a BLS proof of possession for a loaded key.
	ProvePossession(ctx context.Context, key tezos.PublicKeyHash) (tezos.Signature, error)
	// Ready reports whether the enclave can serve requests now.
	Ready(ctx context.Context) error
}
