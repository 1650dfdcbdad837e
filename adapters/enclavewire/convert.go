package enclavewire

import (
	"fmt"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// KeyTypeFor returns the enclave's name for a domain key type.
func KeyTypeFor(t tezos.KeyType) (KeyType, error) {
	switch t {
	case tezos.Ed25519:
		return KeyEd25519, nil
	case tezos.Secp256k1:
		return KeySecp256k1, nil
	case tezos.P256:
		return KeyNistP256, nil
	case tezos.BLS:
		return KeyBLS, nil
	}
	return "", fmt.Errorf("rpc: unsupported key type %v", t)
}

// Tezos returns the domain key type for an enclave key type name.
func (t KeyType) Tezos() (tezos.KeyType, error) {
	switch t {
	case KeyEd25519:
		return tezos.Ed25519, nil
	case KeySecp256k1:
		return tezos.Secp256k1, nil
	case KeyNistP256:
		return tezos.P256, nil
	case KeyBLS:
		return tezos.BLS, nil
	}
	return 0, fmt.Errorf("rpc: unknown key type %q", string(t))
}

// NewPrivateKey converts a domain private key to its wire form. The bytes
// are copied; zero the result (Zero) after use.
func NewPrivateKey(sk tezos.PrivateKey) (*PrivateKey, error) {
	if len(sk.Bytes) != 32 {
		return nil, fmt.Errorf("rpc: invalid %v private key length %d, want 32", sk.Type, len(sk.Bytes))
	}
	b := append([]byte(nil), sk.Bytes...)
	switch sk.Type {
	case tezos.Ed25519:
		return &PrivateKey{Ed25519: b}, nil
	case tezos.Secp256k1:
		return &PrivateKey{Secp256k1: b}, nil
	case tezos.P256:
		return &PrivateKey{NistP256: b}, nil
	case tezos.BLS:
		return &PrivateKey{Bls: b}, nil
	}
	clear(b)
	return nil, fmt.Errorf("rpc: unsupported key type %v", sk.Type)
}

// TaggedFromPublicKey converts a domain public key to its wire form.
func TaggedFromPublicKey(pk tezos.PublicKey) (Tagged, error) {
	t, err := KeyTypeFor(pk.Type)
	if err != nil {
		return Tagged{}, err
	}
	return Tagged{Type: t, Bytes: pk.Bytes}, nil
}

// TaggedFromSignature converts a domain signature to its wire form.
func TaggedFromSignature(sig tezos.Signature) (Tagged, error) {
	t, err := KeyTypeFor(sig.Type)
	if err != nil {
		return Tagged{}, err
	}
	return Tagged{Type: t, Bytes: sig.Bytes}, nil
}

// PublicKey converts a wire public key to the domain type, validating its
// length and curve point.
func (t Tagged) PublicKey() (tezos.PublicKey, error) {
	kt, err := t.Type.Tezos()
	if err != nil {
		return tezos.PublicKey{}, err
	}
	pk, err := tezos.NewPublicKey(kt, t.Bytes)
	if err != nil {
		return tezos.PublicKey{}, fmt.Errorf("rpc: enclave returned an %w", err)
	}
	return pk, nil
}

// PublicKeyOf is PublicKey that also requires the key type want.
func (t Tagged) PublicKeyOf(want tezos.KeyType) (tezos.PublicKey, error) {
	pk, err := t.PublicKey()
	if err != nil {
		return pk, err
	}
	if pk.Type != want {
		return tezos.PublicKey{}, fmt.Errorf("rpc: enclave returned a %v public key, %v expected", pk.Type, want)
	}
	return pk, nil
}

// Signature converts a wire signature to the domain type, requiring the key
// type want and the right length (64 bytes, 96 for BLS).
func (t Tagged) Signature(want tezos.KeyType) (tezos.Signature, error) {
	kt, err := t.Type.Tezos()
	if err != nil {
		return tezos.Signature{}, err
	}
	if kt != want {
		return tezos.Signature{}, fmt.Errorf("rpc: enclave returned a %v signature, %v expected", kt, want)
	}
	size := 64
	if kt == tezos.BLS {
		size = 96
	}
	if len(t.Bytes) != size {
		return tezos.Signature{}, fmt.Errorf("rpc: enclave returned a %v signature of %d bytes, want %d", kt, len(t.Bytes), size)
	}
	return tezos.Signature{Type: kt, Bytes: append([]byte(nil), t.Bytes...)}, nil
}

// PrivateKey converts a wire private key to the domain type, validating it.
// The error never contains the key.
func (t Tagged) PrivateKey() (tezos.PrivateKey, error) {
	kt, err := t.Type.Tezos()
	if err != nil {
		return tezos.PrivateKey{}, err
	}
	sk, err := tezos.NewPrivateKey(kt, t.Bytes)
	if err != nil {
		return tezos.PrivateKey{}, fmt.Errorf("rpc: invalid %v private key", kt)
	}
	return sk, nil
}

// Tagged returns the single entry of a wire private key (sharing its bytes).
func (p *PrivateKey) Tagged() (Tagged, error) {
	if p == nil {
		return Tagged{}, fmt.Errorf("rpc: nil private key")
	}
	var out Tagged
	n := 0
	for _, e := range []Tagged{{KeySecp256k1, p.Secp256k1}, {KeyNistP256, p.NistP256}, {KeyEd25519, p.Ed25519}, {KeyBLS, p.Bls}} {
		if e.Bytes != nil {
			out = e
			n++
		}
	}
	if n != 1 {
		return Tagged{}, fmt.Errorf("rpc: private key must have exactly one entry, has %d", n)
	}
	return out, nil
}
