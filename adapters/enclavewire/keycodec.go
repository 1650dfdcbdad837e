package enclavewire

import (
	"errors"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// KeyCodec is the plaintext a sealed blob holds: the CBOR encoding of the
// PrivateKey map (enclaveside.KeyCodec), exactly what ECAD Labs'
// enclave-signer hands its KMS, so that the two enclaves open each other's
// blobs under the same KMS key.
type KeyCodec struct{}

// MarshalKey encodes sk as a PrivateKey map. The caller zeroes the result.
func (KeyCodec) MarshalKey(sk tezos.PrivateKey) ([]byte, error) {
	w, err := NewPrivateKey(sk)
	if err != nil {
		return nil, err
	}
	defer w.Zero()
	return MarshalPrivateKey(w)
}

// UnmarshalKey decodes a PrivateKey map and validates the key. The error
// never contains the key.
func (KeyCodec) UnmarshalKey(plain []byte) (tezos.PrivateKey, error) {
	t, err := UnmarshalPrivateKey(plain)
	if err != nil {
		return tezos.PrivateKey{}, err
	}
	defer clear(t.Bytes)
	sk, err := t.PrivateKey()
	if err != nil {
		return tezos.PrivateKey{}, errors.New("enclavewire: the sealed plaintext is not a valid private key")
	}
	return sk, nil
}

var _ enclaveside.KeyCodec = KeyCodec{}
