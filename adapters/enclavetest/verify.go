package enclavetest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	blst "github.com/supranational/blst/bindings/go"
	"golang.org/x/crypto/blake2b"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// Verify checks a signature with the primitives' own libraries (crypto/ed25519,
// crypto/ecdsa, decred's secp256k1, blst), not with domain/tezos's
// verification, following the enclave-signer's rules: Blake2b-256 of the
// message for Ed25519 and ECDSA (low-S required for secp256k1), the raw
// message for BLS with the augmented scheme (version 1) or the
// proof-of-possession scheme (2 and 255).
func Verify(pk tezos.PublicKey, msg []byte, sig tezos.Signature, version uint8) error {
	if sig.Type != pk.Type {
		return fmt.Errorf("a %v signature for a %v key", sig.Type, pk.Type)
	}
	digest := blake2b.Sum256(msg)
	switch pk.Type {
	case tezos.Ed25519:
		if !ed25519.Verify(ed25519.PublicKey(pk.Bytes), digest[:], sig.Bytes) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	case tezos.P256:
		x, y := elliptic.UnmarshalCompressed(elliptic.P256(), pk.Bytes)
		if x == nil || len(sig.Bytes) != 64 {
			return errors.New("bad P-256 key or signature")
		}
		r, s := new(big.Int).SetBytes(sig.Bytes[:32]), new(big.Int).SetBytes(sig.Bytes[32:])
		if !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, digest[:], r, s) {
			return errors.New("P-256 signature does not verify")
		}
		return nil
	case tezos.Secp256k1:
		pub, err := secp256k1.ParsePubKey(pk.Bytes)
		if err != nil || len(sig.Bytes) != 64 {
			return errors.New("bad secp256k1 key or signature")
		}
		var r, s secp256k1.ModNScalar
		if r.SetByteSlice(sig.Bytes[:32]) || s.SetByteSlice(sig.Bytes[32:]) {
			return errors.New("secp256k1 signature out of range")
		}
		if s.IsOverHalfOrder() {
			return errors.New("secp256k1 signature is not low-S")
		}
		if !secpecdsa.NewSignature(&r, &s).Verify(digest[:], pub) {
			return errors.New("secp256k1 signature does not verify")
		}
		return nil
	case tezos.BLS:
		pub := new(blst.P1Affine).Uncompress(pk.Bytes)
		s := new(blst.P2Affine).Uncompress(sig.Bytes)
		if pub == nil || s == nil {
			return errors.New("bad BLS key or signature")
		}
		m, dst := msg, "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
		if version == 1 {
			m, dst = append(append([]byte(nil), pk.Bytes...), msg...), "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_AUG_"
		}
		if !s.Verify(true, pub, true, m, []byte(dst)) {
			return fmt.Errorf("BLS signature (version %d) does not verify", version)
		}
		return nil
	}
	return fmt.Errorf("unknown key type %v", pk.Type)
}

// VerifyPossession checks a BLS proof of possession with blst.
func VerifyPossession(pk tezos.PublicKey, proof tezos.Signature) error {
	pub := new(blst.P1Affine).Uncompress(pk.Bytes)
	s := new(blst.P2Affine).Uncompress(proof.Bytes)
	if pk.Type != tezos.BLS || pub == nil || s == nil {
		return errors.New("bad BLS key or proof")
	}
	if !s.Verify(true, pub, true, pk.Bytes, []byte("BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_")) {
		return errors.New("proof of possession does not verify")
	}
	return nil
}
