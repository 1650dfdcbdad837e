package tezos

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"golang.org/x/crypto/blake2b"

	"github.com/sigil-signer/sigil/domain"
)

// KeyType is one of the four Tezos signature schemes.
type KeyType uint8

// The supported key types. The zero value is not a valid type.
const (
	Ed25519   KeyType = iota + 1 // tz1
	Secp256k1                    // tz2
	P256                         // tz3 (NIST P-256)
	BLS                          // tz4 (BLS12-381, min-pk)
)

// KeyTypes lists every supported key type in address order.
var KeyTypes = []KeyType{Ed25519, Secp256k1, P256, BLS}

// String returns the lower-case algorithm name (ed25519, secp256k1, p256, bls).
func (t KeyType) String() string {
	switch t {
	case Ed25519:
		return "ed25519"
	case Secp256k1:
		return "secp256k1"
	case P256:
		return "p256"
	case BLS:
		return "bls"
	}
	return fmt.Sprintf("KeyType(%d)", uint8(t))
}

// AddressPrefix returns tz1, tz2, tz3 or tz4.
func (t KeyType) AddressPrefix() string {
	if !t.Valid() {
		return ""
	}
	return fmt.Sprintf("tz%d", uint8(t))
}

// Valid reports whether t is one of the supported types.
func (t KeyType) Valid() bool { return t >= Ed25519 && t <= BLS }

// ParseKeyType accepts tz1..tz4 and the algorithm names ed25519, secp256k1,
// p256 (also nistp256, p-256) and bls, case-insensitively.
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "tz1", "ed25519":
		return Ed25519, nil
	case "tz2", "secp256k1":
		return Secp256k1, nil
	case "tz3", "p256", "p-256", "nistp256", "secp256r1":
		return P256, nil
	case "tz4", "bls", "bls12-381", "bls12_381":
		return BLS, nil
	}
	return 0, fmt.Errorf("unknown key type %q (want one of tz1, tz2, tz3, tz4, ed25519, secp256k1, p256, bls)", domain.Echo(s))
}

// PublicKeyHash is a Tezos implicit account address (tz1..tz4).
type PublicKeyHash struct {
	Type KeyType
	Hash [20]byte
}

// String returns the tz… address.
func (h PublicKeyHash) String() string {
	e := pkhEncoding(h.Type)
	if e.prefix == nil {
		return ""
	}
	return EncodeBase58Check(e.prefix, h.Hash[:])
}

// IsZero reports whether h is the zero value.
func (h PublicKeyHash) IsZero() bool { return h.Type == 0 }

// Tagged returns the 21-byte binary form: a tag byte (0 tz1, 1 tz2, 2 tz3,
// 3 tz4) followed by the 20-byte hash, as Tezos encodes public_key_hash.
func (h PublicKeyHash) Tagged() []byte {
	out := make([]byte, 0, 21)
	out = append(out, byte(h.Type)-1)
	return append(out, h.Hash[:]...)
}

// ParsePublicKeyHash parses a tz1..tz4 address.
func ParsePublicKeyHash(s string) (PublicKeyHash, error) {
	raw, err := decodeBase58Check(s)
	if err != nil {
		return PublicKeyHash{}, fmt.Errorf("invalid key hash %q: %w", domain.Echo(s), err)
	}
	for _, t := range KeyTypes {
		e := pkhEncoding(t)
		if bytes.HasPrefix(raw, e.prefix) && len(raw) == len(e.prefix)+e.size {
			var h PublicKeyHash
			h.Type = t
			copy(h.Hash[:], raw[len(e.prefix):])
			return h, nil
		}
	}
	return PublicKeyHash{}, fmt.Errorf("invalid key hash %q: not a tz1, tz2, tz3 or tz4 address", domain.Echo(s))
}

// PublicKey is a Tezos public key in its binary form: 32 bytes for ed25519,
// a 33-byte compressed point for secp256k1 and P-256, a 48-byte compressed G1
// point for BLS.
type PublicKey struct {
	Type  KeyType
	Bytes []byte
}

// NewPublicKey validates b as a public key of type t.
func NewPublicKey(t KeyType, b []byte) (PublicKey, error) {
	e := pkEncoding(t)
	if e.prefix == nil {
		return PublicKey{}, fmt.Errorf("invalid key type %v", t)
	}
	if len(b) != e.size {
		return PublicKey{}, fmt.Errorf("invalid %v public key: %d bytes, want %d", t, len(b), e.size)
	}
	pk := PublicKey{Type: t, Bytes: bytes.Clone(b)}
	if err := pk.validate(); err != nil {
		return PublicKey{}, err
	}
	return pk, nil
}

func (pk PublicKey) validate() error {
	switch pk.Type {
	case Ed25519:
		return nil
	case Secp256k1:
		if _, err := secp256k1.ParsePubKey(pk.Bytes); err != nil {
			return fmt.Errorf("invalid secp256k1 public key: %w", err)
		}
	case P256:
		if x, _ := elliptic.UnmarshalCompressed(elliptic.P256(), pk.Bytes); x == nil {
			return errors.New("invalid P-256 public key: not a compressed curve point")
		}
	case BLS:
		if _, err := blsPublicKey(pk.Bytes); err != nil {
			return err
		}
	default:
		return fmt.Errorf("invalid key type %v", pk.Type)
	}
	return nil
}

// Hash returns the key's Blake2b-160 hash, i.e. its tz address.
func (pk PublicKey) Hash() PublicKeyHash {
	h, _ := blake2b.New(20, nil)
	h.Write(pk.Bytes)
	var out PublicKeyHash
	out.Type = pk.Type
	copy(out.Hash[:], h.Sum(nil))
	return out
}

// String returns the base58 form (edpk…, sppk…, p2pk…, BLpk…).
func (pk PublicKey) String() string {
	e := pkEncoding(pk.Type)
	if e.prefix == nil {
		return ""
	}
	return EncodeBase58Check(e.prefix, pk.Bytes)
}

// Equal reports whether two public keys are the same.
func (pk PublicKey) Equal(o PublicKey) bool {
	return pk.Type == o.Type && bytes.Equal(pk.Bytes, o.Bytes)
}

// ParsePublicKey parses edpk…, sppk…, p2pk… or BLpk….
func ParsePublicKey(s string) (PublicKey, error) {
	raw, err := decodeBase58Check(s)
	if err != nil {
		return PublicKey{}, fmt.Errorf("invalid public key: %w", err)
	}
	for _, t := range KeyTypes {
		e := pkEncoding(t)
		if bytes.HasPrefix(raw, e.prefix) && len(raw) == len(e.prefix)+e.size {
			return NewPublicKey(t, raw[len(e.prefix):])
		}
	}
	return PublicKey{}, errors.New("invalid public key: not an edpk, sppk, p2pk or BLpk key")
}

// ecdsaCurvePublic decodes a compressed P-256 point.
func p256PublicKey(b []byte) (*ecdsa.PublicKey, error) {
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), b)
	if x == nil {
		return nil, errors.New("invalid P-256 public key")
	}
	return &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, nil
}
