package tezos

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"fmt"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	blst "github.com/supranational/blst/bindings/go"
)

// Verifier checks signatures of one public key, which it parsed (and, for
// BLS, validated) once: what PublicKey.Verify does, without decoding the
// key at every call. It is safe for concurrent use.
type Verifier struct {
	pk   PublicKey
	secp *secp256k1.PublicKey
	p256 *ecdsa.PublicKey
	bls  *blst.P1Affine
}

// NewVerifier parses pk.
func NewVerifier(pk PublicKey) (*Verifier, error) {
	v := &Verifier{pk: pk}
	var err error
	switch pk.Type {
	case Ed25519:
		if len(pk.Bytes) != ed25519.PublicKeySize {
			err = fmt.Errorf("invalid Ed25519 public key length %d", len(pk.Bytes))
		}
	case Secp256k1:
		v.secp, err = secp256k1.ParsePubKey(pk.Bytes)
	case P256:
		v.p256, err = p256PublicKey(pk.Bytes)
	case BLS:
		v.bls, err = blsPublicKey(pk.Bytes)
	default:
		err = fmt.Errorf("invalid key type %v", pk.Type)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// PublicKey returns the key.
func (v *Verifier) PublicKey() PublicKey { return v.pk }

// Verify checks sig over msg, as PublicKey.Verify does.
func (v *Verifier) Verify(msg []byte, sig Signature, version uint8) error {
	if sig.Type != 0 && sig.Type != v.pk.Type {
		return fmt.Errorf("signature type %v does not match %v key", sig.Type, v.pk.Type)
	}
	if v.pk.Type != BLS {
		d := Digest(msg)
		switch v.pk.Type {
		case Ed25519:
			if len(sig.Bytes) != ed25519.SignatureSize || !ed25519.Verify(ed25519.PublicKey(v.pk.Bytes), d[:], sig.Bytes) {
				return ErrBadSignature
			}
			return nil
		case Secp256k1:
			var r, s secp256k1.ModNScalar
			if len(sig.Bytes) != 64 || r.SetByteSlice(sig.Bytes[:32]) || s.SetByteSlice(sig.Bytes[32:]) || s.IsOverHalfOrder() {
				return ErrBadSignature
			}
			if !secpecdsa.NewSignature(&r, &s).Verify(d[:], v.secp) {
				return ErrBadSignature
			}
			return nil
		case P256:
			if len(sig.Bytes) != 64 {
				return ErrBadSignature
			}
			r, s := new(big.Int).SetBytes(sig.Bytes[:32]), new(big.Int).SetBytes(sig.Bytes[32:])
			if !ecdsa.Verify(v.p256, d[:], r, s) {
				return ErrBadSignature
			}
			return nil
		}
	}
	var m []byte
	var dst string
	switch version {
	case SignVersion1:
		m, dst = append(append(make([]byte, 0, len(v.pk.Bytes)+len(msg)), v.pk.Bytes...), msg...), dstAug
	case SignVersion2, SignVersionLatest:
		m, dst = msg, dstPop
	default:
		return fmt.Errorf("%w %d for a BLS key", ErrInvalidSigningVersion, version)
	}
	return v.blsVerify(sig.Bytes, m, dst)
}

// VerifyPossession checks a BLS proof of possession.
func (v *Verifier) VerifyPossession(proof Signature) error {
	if v.pk.Type != BLS {
		return fmt.Errorf("proof of possession needs a BLS key, not %v", v.pk.Type)
	}
	return v.blsVerify(proof.Bytes, v.pk.Bytes, dstPoP)
}

func (v *Verifier) blsVerify(sigb, msg []byte, dst string) error {
	sig := new(blst.P2Affine).Uncompress(sigb)
	// The signature is checked to be in G2's subgroup; the key was
	// validated once, by NewVerifier.
	if sig == nil || !sig.Verify(true, v.bls, false, msg, []byte(dst)) {
		return ErrBadSignature
	}
	return nil
}
