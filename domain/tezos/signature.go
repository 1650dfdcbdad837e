package tezos

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"crypto/ecdsa"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	blst "github.com/supranational/blst/bindings/go"
	"golang.org/x/crypto/blake2b"
)

// BLS signing versions, as the enclave and Signatory's ?version= define them.
const (
	SignVersion0      uint8 = 0   // refused for BLS keys
	SignVersion1      uint8 = 1   // augmented scheme: public key ‖ message
	SignVersion2      uint8 = 2   // proof-of-possession scheme (Tezos since Seoul)
	SignVersionLatest uint8 = 255 // same as 2
)

// BLS domain separation tags.
const (
	dstAug = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_AUG_"
	dstPop = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
	dstPoP = "BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
)

// ErrInvalidSigningVersion is returned for a BLS signing version the
// enclave refuses (0, or anything but 1, 2 and 255).
var ErrInvalidSigningVersion = errors.New("invalid signing version")

// Signature is a Tezos signature: 64 bytes (ed25519; r‖s for ECDSA) or a
// 96-byte compressed G2 point for BLS. Type 0 means a generic 64-byte
// signature whose scheme is not known (parsed from sig…).
type Signature struct {
	Type  KeyType
	Bytes []byte
}

// String returns the type-specific form (edsig…, spsig1…, p2sig…, BLsig…),
// or the generic sig… form when the type is unknown.
func (s Signature) String() string {
	if s.Type == 0 {
		return s.Generic()
	}
	e := sigEncoding(s.Type)
	return EncodeBase58Check(e.prefix, s.Bytes)
}

// Generic returns the generic sig… form for 64-byte signatures; BLS
// signatures have no generic form and are returned as BLsig….
func (s Signature) Generic() string {
	if len(s.Bytes) == 96 {
		return EncodeBase58Check(prefixBLsig, s.Bytes)
	}
	return EncodeBase58Check(prefixSig, s.Bytes)
}

// ParseSignature parses edsig…, spsig1…, p2sig…, BLsig… or generic sig….
func ParseSignature(str string) (Signature, error) {
	raw, err := decodeBase58Check(str)
	if err != nil {
		return Signature{}, fmt.Errorf("invalid signature: %w", err)
	}
	for _, t := range KeyTypes {
		e := sigEncoding(t)
		if bytes.HasPrefix(raw, e.prefix) && len(raw) == len(e.prefix)+e.size {
			return Signature{Type: t, Bytes: bytes.Clone(raw[len(e.prefix):])}, nil
		}
	}
	if bytes.HasPrefix(raw, prefixSig) && len(raw) == len(prefixSig)+64 {
		return Signature{Bytes: bytes.Clone(raw[len(prefixSig):])}, nil
	}
	return Signature{}, errors.New("invalid signature: not an edsig, spsig1, p2sig, BLsig or sig signature")
}

// Digest returns Blake2b-256 of msg: what ed25519 and ECDSA keys sign.
func Digest(msg []byte) [32]byte { return blake2b.Sum256(msg) }

// Sign signs msg as the enclave does. version matters for BLS only.
func (sk PrivateKey) Sign(msg []byte, version uint8) (Signature, error) {
	switch sk.Type {
	case Ed25519:
		if len(sk.Bytes) != ed25519.SeedSize {
			return Signature{}, errors.New("invalid ed25519 secret key")
		}
		priv := ed25519.NewKeyFromSeed(sk.Bytes)
		defer clear(priv)
		d := Digest(msg)
		return Signature{Type: Ed25519, Bytes: ed25519.Sign(priv, d[:])}, nil
	case Secp256k1:
		if !validScalar(Secp256k1, sk.Bytes) {
			return Signature{}, errors.New("invalid secp256k1 secret key")
		}
		priv := secp256k1.PrivKeyFromBytes(sk.Bytes)
		defer priv.Zero()
		d := Digest(msg)
		sig := secpecdsa.Sign(priv, d[:]) // RFC 6979, low S
		r, s := sig.R(), sig.S()
		out := make([]byte, 64)
		r.PutBytesUnchecked(out[:32])
		s.PutBytesUnchecked(out[32:])
		return Signature{Type: Secp256k1, Bytes: out}, nil
	case P256:
		priv, err := p256Private(sk.Bytes)
		if err != nil {
			return Signature{}, err
		}
		d := Digest(msg)
		der, err := priv.Sign(nil, d[:], crypto.SHA256) // nil random source: RFC 6979 with HMAC-SHA256
		if err != nil {
			return Signature{}, fmt.Errorf("P-256 signing: %w", err)
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			return Signature{}, fmt.Errorf("P-256 signing: %w", err)
		}
		if rs.S.Cmp(new(big.Int).Rsh(p256N, 1)) > 0 {
			rs.S.Sub(p256N, rs.S)
		}
		out := make([]byte, 64)
		rs.R.FillBytes(out[:32])
		rs.S.FillBytes(out[32:])
		return Signature{Type: P256, Bytes: out}, nil
	case BLS:
		s, err := blsSecretKey(sk.Bytes)
		if err != nil {
			return Signature{}, err
		}
		defer s.Zeroize()
		var m []byte
		var dst string
		switch version {
		case SignVersion1:
			pk := new(blst.P1Affine).From(s).Compress()
			m, dst = append(pk, msg...), dstAug
		case SignVersion2, SignVersionLatest:
			m, dst = msg, dstPop
		default:
			return Signature{}, fmt.Errorf("%w %d for a BLS key (want 1, 2 or 255)", ErrInvalidSigningVersion, version)
		}
		sig := new(blst.P2Affine).Sign(s, m, []byte(dst))
		return Signature{Type: BLS, Bytes: sig.Compress()}, nil
	}
	return Signature{}, fmt.Errorf("invalid key type %v", sk.Type)
}

// ProvePossession returns a BLS proof of possession: a signature over the
// compressed public key with the POP domain separation tag.
func (sk PrivateKey) ProvePossession() (Signature, error) {
	if sk.Type != BLS {
		return Signature{}, fmt.Errorf("proof of possession needs a BLS key, not %v", sk.Type)
	}
	s, err := blsSecretKey(sk.Bytes)
	if err != nil {
		return Signature{}, err
	}
	defer s.Zeroize()
	pk := new(blst.P1Affine).From(s).Compress()
	sig := new(blst.P2Affine).Sign(s, pk, []byte(dstPoP))
	return Signature{Type: BLS, Bytes: sig.Compress()}, nil
}

// ErrBadSignature is returned by Verify for a signature that does not verify.
var ErrBadSignature = errors.New("signature verification failed")

// Verify checks sig over msg with pk. version matters for BLS only.
func (pk PublicKey) Verify(msg []byte, sig Signature, version uint8) error {
	if sig.Type != 0 && sig.Type != pk.Type {
		return fmt.Errorf("signature type %v does not match %v key", sig.Type, pk.Type)
	}
	if pk.Type != BLS {
		return pk.VerifyDigest(Digest(msg), sig)
	}
	var m []byte
	var dst string
	switch version {
	case SignVersion1:
		m, dst = append(bytes.Clone(pk.Bytes), msg...), dstAug
	case SignVersion2, SignVersionLatest:
		m, dst = msg, dstPop
	default:
		return fmt.Errorf("%w %d for a BLS key", ErrInvalidSigningVersion, version)
	}
	return blsVerify(pk.Bytes, sig.Bytes, m, dst)
}

// ErrDigestNotSigned is returned by VerifyDigest for BLS keys, which sign the
// message itself, not its digest.
var ErrDigestNotSigned = errors.New("BLS keys sign the message, not its digest")

// VerifyDigest checks sig over the Blake2b-256 digest of a message, which
// is what ed25519, secp256k1 and P-256 keys sign.
func (pk PublicKey) VerifyDigest(d [32]byte, sig Signature) error {
	if sig.Type != 0 && sig.Type != pk.Type {
		return fmt.Errorf("signature type %v does not match %v key", sig.Type, pk.Type)
	}
	switch pk.Type {
	case Ed25519:
		if len(pk.Bytes) != ed25519.PublicKeySize || len(sig.Bytes) != ed25519.SignatureSize ||
			!ed25519.Verify(ed25519.PublicKey(pk.Bytes), d[:], sig.Bytes) {
			return ErrBadSignature
		}
		return nil
	case Secp256k1:
		pub, err := secp256k1.ParsePubKey(pk.Bytes)
		if err != nil || len(sig.Bytes) != 64 {
			return ErrBadSignature
		}
		var r, s secp256k1.ModNScalar
		if r.SetByteSlice(sig.Bytes[:32]) || s.SetByteSlice(sig.Bytes[32:]) || s.IsOverHalfOrder() {
			return ErrBadSignature
		}
		if !secpecdsa.NewSignature(&r, &s).Verify(d[:], pub) {
			return ErrBadSignature
		}
		return nil
	case P256:
		pub, err := p256PublicKey(pk.Bytes)
		if err != nil || len(sig.Bytes) != 64 {
			return ErrBadSignature
		}
		r := new(big.Int).SetBytes(sig.Bytes[:32])
		s := new(big.Int).SetBytes(sig.Bytes[32:])
		if !ecdsa.Verify(pub, d[:], r, s) {
			return ErrBadSignature
		}
		return nil
	case BLS:
		return ErrDigestNotSigned
	}
	return fmt.Errorf("invalid key type %v", pk.Type)
}

// ValidBLSSignature checks that sig is a well-formed BLS signature: a
// compressed point of the G2 subgroup, not the point at infinity.
func ValidBLSSignature(sig Signature) error {
	if sig.Type != 0 && sig.Type != BLS || len(sig.Bytes) != 96 {
		return fmt.Errorf("not a BLS signature")
	}
	p := new(blst.P2Affine).Uncompress(sig.Bytes)
	if p == nil || !p.SigValidate(true) {
		return ErrBadSignature
	}
	return nil
}

// VerifyPossession checks a BLS proof of possession for pk.
func (pk PublicKey) VerifyPossession(proof Signature) error {
	if pk.Type != BLS {
		return fmt.Errorf("proof of possession needs a BLS key, not %v", pk.Type)
	}
	return blsVerify(pk.Bytes, proof.Bytes, pk.Bytes, dstPoP)
}

func blsVerify(pkb, sigb, msg []byte, dst string) error {
	pub, err := blsPublicKey(pkb)
	if err != nil {
		return ErrBadSignature
	}
	sig := new(blst.P2Affine).Uncompress(sigb)
	if sig == nil || !sig.Verify(true, pub, false, msg, []byte(dst)) {
		return ErrBadSignature
	}
	return nil
}
