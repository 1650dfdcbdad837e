package tezos

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	blst "github.com/supranational/blst/bindings/go"
)

// PrivateKey is a secret key in the enclave's binary form: the 32-byte seed
// for ed25519, a 32-byte big-endian scalar for secp256k1, P-256 and BLS.
//
// Its String and GoString methods never print the secret; use Base58 to
// export it deliberately.
type PrivateKey struct {
	Type  KeyType
	Bytes []byte
}

// String implements fmt.Stringer without revealing the secret.
func (sk PrivateKey) String() string { return fmt.Sprintf("PrivateKey(%v, redacted)", sk.Type) }

// GoString implements fmt.GoStringer without revealing the secret.
func (sk PrivateKey) GoString() string { return sk.String() }

// Zero overwrites the secret bytes.
func (sk *PrivateKey) Zero() {
	clear(sk.Bytes)
}

// NewPrivateKey validates b as a secret key of type t. b is copied.
func NewPrivateKey(t KeyType, b []byte) (PrivateKey, error) {
	if !t.Valid() {
		return PrivateKey{}, fmt.Errorf("invalid key type %v", t)
	}
	if len(b) != 32 {
		return PrivateKey{}, fmt.Errorf("invalid %v secret key: %d bytes, want 32", t, len(b))
	}
	sk := PrivateKey{Type: t, Bytes: bytes.Clone(b)}
	if _, err := sk.Public(); err != nil {
		sk.Zero()
		return PrivateKey{}, err
	}
	return sk, nil
}

// GeneratePrivateKey creates a new random key of type t. A nil rnd means
// crypto/rand.
func GeneratePrivateKey(t KeyType, rnd io.Reader) (PrivateKey, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	switch t {
	case Ed25519:
		seed := make([]byte, ed25519.SeedSize)
		if _, err := io.ReadFull(rnd, seed); err != nil {
			return PrivateKey{}, err
		}
		return PrivateKey{Type: t, Bytes: seed}, nil
	case Secp256k1, P256:
		for {
			b := make([]byte, 32)
			if _, err := io.ReadFull(rnd, b); err != nil {
				return PrivateKey{}, err
			}
			if validScalar(t, b) {
				return PrivateKey{Type: t, Bytes: b}, nil
			}
		}
	case BLS:
		ikm := make([]byte, 32)
		if _, err := io.ReadFull(rnd, ikm); err != nil {
			return PrivateKey{}, err
		}
		s := blst.KeyGen(ikm)
		clear(ikm)
		out := PrivateKey{Type: t, Bytes: s.Serialize()}
		s.Zeroize()
		return out, nil
	}
	return PrivateKey{}, fmt.Errorf("invalid key type %v", t)
}

var (
	secp256k1N = secp256k1.S256().N
	p256N      = elliptic.P256().Params().N
)

func validScalar(t KeyType, b []byte) bool {
	var n *big.Int
	switch t {
	case Secp256k1:
		n = secp256k1N
	case P256:
		n = p256N
	default:
		return false
	}
	k := new(big.Int).SetBytes(b)
	return k.Sign() > 0 && k.Cmp(n) < 0
}

func blsSecretKey(b []byte) (*blst.SecretKey, error) {
	if len(b) != 32 {
		return nil, errors.New("invalid BLS secret key length")
	}
	s := new(blst.SecretKey).Deserialize(b)
	if s == nil || !s.Valid() {
		return nil, errors.New("invalid BLS secret key: scalar out of range")
	}
	return s, nil
}

func blsPublicKey(b []byte) (*blst.P1Affine, error) {
	p := new(blst.P1Affine).Uncompress(b)
	if p == nil || !p.KeyValidate() {
		return nil, errors.New("invalid BLS public key: not a valid G1 point")
	}
	return p, nil
}

func p256Private(b []byte) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("invalid P-256 secret key: %w", err)
	}
	return k, nil
}

// Public derives the public key.
func (sk PrivateKey) Public() (PublicKey, error) {
	if len(sk.Bytes) != 32 {
		return PublicKey{}, fmt.Errorf("invalid %v secret key length %d", sk.Type, len(sk.Bytes))
	}
	switch sk.Type {
	case Ed25519:
		priv := ed25519.NewKeyFromSeed(sk.Bytes)
		pub := bytes.Clone(priv[32:])
		clear(priv)
		return PublicKey{Type: Ed25519, Bytes: pub}, nil
	case Secp256k1:
		if !validScalar(Secp256k1, sk.Bytes) {
			return PublicKey{}, errors.New("invalid secp256k1 secret key: scalar out of range")
		}
		priv := secp256k1.PrivKeyFromBytes(sk.Bytes)
		defer priv.Zero()
		return PublicKey{Type: Secp256k1, Bytes: priv.PubKey().SerializeCompressed()}, nil
	case P256:
		priv, err := p256Private(sk.Bytes)
		if err != nil {
			return PublicKey{}, err
		}
		return PublicKey{Type: P256, Bytes: elliptic.MarshalCompressed(elliptic.P256(), priv.X, priv.Y)}, nil
	case BLS:
		s, err := blsSecretKey(sk.Bytes)
		if err != nil {
			return PublicKey{}, err
		}
		defer s.Zeroize()
		return PublicKey{Type: BLS, Bytes: new(blst.P1Affine).From(s).Compress()}, nil
	}
	return PublicKey{}, fmt.Errorf("invalid key type %v", sk.Type)
}

// Base58 returns the secret key in Tezos form (edsk…, spsk…, p2sk…, BLsk…).
// Handle the result as a secret.
func (sk PrivateKey) Base58() string {
	e := skEncoding(sk.Type)
	if e.prefix == nil {
		return ""
	}
	payload := sk.Bytes
	if sk.Type == BLS {
		payload = reversed(sk.Bytes) // Octez serializes the BLS scalar little-endian
		defer clear(payload)
	}
	return EncodeBase58Check(e.prefix, payload)
}

// ParsePrivateKey parses an unencrypted Tezos secret key: edsk… (32-byte seed
// or 64-byte form), spsk…, p2sk… or BLsk…. The error never contains the input.
func ParsePrivateKey(s string) (PrivateKey, error) {
	raw, err := decodeBase58Check(s)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("invalid secret key: %w", err)
	}
	defer clear(raw)
	if bytes.HasPrefix(raw, prefixEdsk64) && len(raw) == len(prefixEdsk64)+64 {
		body := raw[len(prefixEdsk64):]
		sk, err := NewPrivateKey(Ed25519, body[:32])
		if err != nil {
			return PrivateKey{}, err
		}
		pk, _ := sk.Public()
		if !bytes.Equal(pk.Bytes, body[32:]) {
			sk.Zero()
			return PrivateKey{}, errors.New("invalid secret key: 64-byte edsk public half does not match its seed")
		}
		return sk, nil
	}
	for _, t := range KeyTypes {
		e := skEncoding(t)
		if bytes.HasPrefix(raw, e.prefix) && len(raw) == len(e.prefix)+e.size {
			body := raw[len(e.prefix):]
			if t == BLS {
				body = reversed(body)
				defer clear(body)
			}
			return NewPrivateKey(t, body)
		}
	}
	for _, p := range [][]byte{{7, 90, 60, 179, 41}, {9, 237, 241, 174, 150}, {9, 48, 57, 115, 171}, {2, 5, 30, 53, 25}} {
		if bytes.HasPrefix(raw, p) {
			return PrivateKey{}, errors.New("invalid secret key: encrypted secret keys are not supported, decrypt it first")
		}
	}
	return PrivateKey{}, errors.New("invalid secret key: not an edsk, spsk, p2sk or BLsk key")
}

func reversed(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}
