package tezos

import (
	"bytes"
	"crypto/elliptic"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"

	blst "github.com/supranational/blst/bindings/go"
)

// blsR is the order of the BLS12-381 scalar field.
var blsR, _ = new(big.Int).SetString("73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001", 16)

func be32(n *big.Int) []byte { return n.FillBytes(make([]byte, 32)) }

// flipLast changes the last character of a base58 string (breaking its checksum).
func flipLast(s string) string {
	c := s[len(s)-1]
	r := byte('2')
	if c == '2' {
		r = '3'
	}
	return s[:len(s)-1] + string(r)
}

// noLeak fails if err's text contains input or the hex of secret.
func noLeak(t *testing.T, err error, input string, secret []byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if len(input) > 0 && strings.Contains(msg, input) {
		t.Fatalf("error echoes the secret input")
	}
	for i := 0; i+10 <= len(input); i += 5 {
		if strings.Contains(msg, input[i:i+10]) {
			t.Fatalf("error echoes part of the secret input")
		}
	}
	if len(secret) > 0 && (strings.Contains(msg, hex.EncodeToString(secret)) || strings.Contains(msg, string(secret))) {
		t.Fatalf("error contains the secret bytes")
	}
}

func TestParsePrivateKeyErrors(t *testing.T) {
	seed := bytes.Repeat([]byte{0x42}, 32)
	edsk := EncodeBase58Check(prefixEdskSeed, seed)
	edPub, _ := (PrivateKey{Type: Ed25519, Bytes: seed}).Public()
	otherPub, _ := (PrivateKey{Type: Ed25519, Bytes: bytes.Repeat([]byte{7}, 32)}).Public()
	le := func(n *big.Int) []byte { return reversed(be32(n)) }
	nMinus1 := new(big.Int).Sub(secp256k1N, big.NewInt(1))
	ok := []struct {
		name string
		in   string
		typ  KeyType
	}{
		{"edsk seed", edsk, Ed25519},
		{"edsk 64", EncodeBase58Check(prefixEdsk64, append(bytes.Clone(seed), edPub.Bytes...)), Ed25519},
		{"spsk n-1", EncodeBase58Check(prefixSpsk, be32(nMinus1)), Secp256k1},
		{"spsk 1", EncodeBase58Check(prefixSpsk, be32(big.NewInt(1))), Secp256k1},
		{"p2sk n-1", EncodeBase58Check(prefixP2sk, be32(new(big.Int).Sub(p256N, big.NewInt(1)))), P256},
		{"BLsk r-1", EncodeBase58Check(prefixBLsk, le(new(big.Int).Sub(blsR, big.NewInt(1)))), BLS},
		{"BLsk 1", EncodeBase58Check(prefixBLsk, le(big.NewInt(1))), BLS},
	}
	for _, c := range ok {
		sk, err := ParsePrivateKey(c.in)
		if err != nil || sk.Type != c.typ {
			t.Errorf("%s: got %v, %v; want a %v key", c.name, sk.Type, err, c.typ)
			continue
		}
		if sk.Base58() != c.in && c.name != "edsk 64" {
			t.Errorf("%s: does not round-trip", c.name)
		}
	}

	bad := []struct {
		name string
		in   string
		want string
	}{
		{"bad checksum", flipLast(edsk), "checksum"},
		{"invalid character", edsk[:10] + "0" + edsk[11:], "invalid character at position 10"},
		{"empty", "", "too short"},
		{"public key", edPub.String(), "not an edsk"},
		{"wrong length", EncodeBase58Check(prefixEdskSeed, seed[:31]), "not an edsk"},
		{"edsk 64 mismatched half", EncodeBase58Check(prefixEdsk64, append(bytes.Clone(seed), otherPub.Bytes...)), "does not match"},
		{"spsk zero", EncodeBase58Check(prefixSpsk, make([]byte, 32)), "out of range"},
		{"spsk n", EncodeBase58Check(prefixSpsk, be32(secp256k1N)), "out of range"},
		{"spsk 2^256-1", EncodeBase58Check(prefixSpsk, bytes.Repeat([]byte{0xff}, 32)), "out of range"},
		{"p2sk zero", EncodeBase58Check(prefixP2sk, make([]byte, 32)), "P-256"},
		{"p2sk n", EncodeBase58Check(prefixP2sk, be32(p256N)), "P-256"},
		{"BLsk zero", EncodeBase58Check(prefixBLsk, make([]byte, 32)), "out of range"},
		{"BLsk r", EncodeBase58Check(prefixBLsk, le(blsR)), "out of range"},
		{"BLsk 2^256-1", EncodeBase58Check(prefixBLsk, bytes.Repeat([]byte{0xff}, 32)), "out of range"},
		{"encrypted edesk", EncodeBase58Check([]byte{7, 90, 60, 179, 41}, make([]byte, 56)), "encrypted"},
		{"encrypted spesk", EncodeBase58Check([]byte{9, 237, 241, 174, 150}, make([]byte, 56)), "encrypted"},
	}
	for _, c := range bad {
		sk, err := ParsePrivateKey(c.in)
		if err == nil {
			t.Errorf("%s: accepted as a %v key", c.name, sk.Type)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want it to mention %q", c.name, err, c.want)
		}
		noLeak(t, err, c.in, nil)
	}
	// The big-endian encoding of a small scalar is a different (valid) key:
	// BLsk is little-endian.
	one := EncodeBase58Check(prefixBLsk, be32(big.NewInt(1)))
	if sk, err := ParsePrivateKey(one); err == nil && bytes.Equal(sk.Bytes, be32(big.NewInt(1))) {
		t.Error("BLsk is decoded big-endian")
	}
}

func TestNewPrivateKeyErrors(t *testing.T) {
	for _, c := range []struct {
		typ KeyType
		b   []byte
	}{
		{Ed25519, make([]byte, 31)},
		{Secp256k1, make([]byte, 33)},
		{Secp256k1, make([]byte, 32)},
		{P256, be32(p256N)},
		{BLS, be32(blsR)},
		{0, make([]byte, 32)},
		{9, make([]byte, 32)},
	} {
		if _, err := NewPrivateKey(c.typ, c.b); err == nil {
			t.Errorf("NewPrivateKey(%v, %d bytes) accepted", c.typ, len(c.b))
		}
	}
	sk := PrivateKey{Type: Secp256k1, Bytes: bytes.Repeat([]byte{0xab}, 32)}
	for _, s := range []string{sk.String(), sk.GoString()} {
		if strings.Contains(strings.ToLower(s), "abab") {
			t.Errorf("PrivateKey formatting reveals the secret: %s", s)
		}
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	// x = 5 is not the abscissa of a secp256k1 point (5³+7 = 132 is not a square mod p).
	x5 := make([]byte, 33)
	x5[0], x5[32] = 2, 5
	var notP256 []byte
	for x := int64(1); ; x++ { // find an x with no P-256 point
		b := make([]byte, 33)
		b[0] = 2
		big.NewInt(x).FillBytes(b[1:])
		if px, _ := elliptic.UnmarshalCompressed(elliptic.P256(), b); px == nil {
			notP256 = b
			break
		}
	}
	k, _ := GeneratePrivateKey(Secp256k1, nil)
	pk, _ := k.Public()
	badTag := bytes.Clone(pk.Bytes)
	badTag[0] = 5
	blsInfinity := make([]byte, 48)
	blsInfinity[0] = 0xc0
	blsNotOnCurve := make([]byte, 48)
	blsNotOnCurve[0] = 0x80
	blsNotOnCurve[47] = 3
	bk, _ := GeneratePrivateKey(BLS, nil)
	bpk, _ := bk.Public()
	blsUncompressedFlag := bytes.Clone(bpk.Bytes)
	blsUncompressedFlag[0] &^= 0x80

	cases := []struct {
		name string
		in   string
	}{
		{"bad checksum", flipLast(pk.String())},
		{"key hash", pk.Hash().String()},
		{"wrong length", EncodeBase58Check(prefixSppk, pk.Bytes[:32])},
		{"secp256k1 x not on curve", EncodeBase58Check(prefixSppk, x5)},
		{"secp256k1 bad tag", EncodeBase58Check(prefixSppk, badTag)},
		{"P-256 x not on curve", EncodeBase58Check(prefixP2pk, notP256)},
		{"BLS infinity", EncodeBase58Check(prefixBLpk, blsInfinity)},
		{"BLS not on curve", EncodeBase58Check(prefixBLpk, blsNotOnCurve)},
		{"BLS without compression flag", EncodeBase58Check(prefixBLpk, blsUncompressedFlag)},
		{"secret key", k.Base58()},
	}
	for _, c := range cases {
		if got, err := ParsePublicKey(c.in); err == nil {
			t.Errorf("%s: accepted as %v", c.name, got)
		}
	}
	if _, err := NewPublicKey(Ed25519, make([]byte, 31)); err == nil {
		t.Error("NewPublicKey accepted a 31-byte ed25519 key")
	}
	if got, err := ParsePublicKey(pk.String()); err != nil || !got.Equal(pk) {
		t.Errorf("valid key refused: %v", err)
	}
}

func TestParsePublicKeyHashAndSignatureErrors(t *testing.T) {
	h := EncodeBase58Check(prefixTz4, make([]byte, 20))
	for _, in := range []string{flipLast(h), EncodeBase58Check(prefixTz4, make([]byte, 21)), EncodeBase58Check(prefixEdpk, make([]byte, 32)), "", "tz1", "0OIl"} {
		if _, err := ParsePublicKeyHash(in); err == nil {
			t.Errorf("ParsePublicKeyHash(%q) accepted", in)
		}
	}
	if got, err := ParsePublicKeyHash(h); err != nil || got.Type != BLS || got.String() != h {
		t.Errorf("ParsePublicKeyHash(%s) = %v, %v", h, got, err)
	}
	if got, _ := ParsePublicKeyHash(h); !bytes.Equal(got.Tagged(), append([]byte{3}, make([]byte, 20)...)) {
		t.Errorf("tz4 tagged form %x", got.Tagged())
	}
	sig := EncodeBase58Check(prefixEdsig, make([]byte, 64))
	for _, in := range []string{flipLast(sig), EncodeBase58Check(prefixEdsig, make([]byte, 63)), EncodeBase58Check(prefixSig, make([]byte, 96)),
		EncodeBase58Check(prefixBLsig, make([]byte, 64)), EncodeBase58Check(prefixEdpk, make([]byte, 32)), ""} {
		if _, err := ParseSignature(in); err == nil {
			t.Errorf("ParseSignature(%q) accepted", in)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	msg := []byte{0x03, 1, 2, 3}
	keys := map[KeyType]PrivateKey{}
	for _, kt := range KeyTypes {
		sk, err := GeneratePrivateKey(kt, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[kt] = sk
	}
	pub := func(kt KeyType) PublicKey { p, _ := keys[kt].Public(); return p }

	// High-S secp256k1: the same signature with s replaced by n-s is valid
	// ECDSA but Tezos refuses it.
	sig, _ := keys[Secp256k1].Sign(msg, 0)
	s := new(big.Int).SetBytes(sig.Bytes[32:])
	high := Signature{Type: Secp256k1, Bytes: append(bytes.Clone(sig.Bytes[:32]), be32(new(big.Int).Sub(secp256k1N, s))...)}
	if err := pub(Secp256k1).Verify(msg, high, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("high-S secp256k1 signature: %v, want ErrBadSignature", err)
	}
	if err := pub(Secp256k1).Verify(msg, sig, 0); err != nil {
		t.Errorf("low-S secp256k1 signature refused: %v", err)
	}

	zero64 := make([]byte, 64)
	rOverflow := append(be32(secp256k1N), be32(big.NewInt(1))...)
	for _, kt := range KeyTypes {
		pk := pub(kt)
		good, err := keys[kt].Sign(msg, SignVersion2)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{
			"empty": nil, "zeros": zero64, "short": good.Bytes[:len(good.Bytes)-1], "long": append(bytes.Clone(good.Bytes), 0),
			"r overflow": rOverflow, "zeros96": make([]byte, 96),
		} {
			if err := pk.Verify(msg, Signature{Bytes: b}, SignVersion2); err == nil {
				t.Errorf("%v: %s signature accepted", kt, name)
			}
		}
		if err := pk.Verify(append(bytes.Clone(msg), 0), good, SignVersion2); err == nil {
			t.Errorf("%v: signature accepted for another message", kt)
		}
		other := Ed25519
		if kt == Ed25519 {
			other = P256
		}
		if err := pk.Verify(msg, Signature{Type: other, Bytes: good.Bytes}, SignVersion2); err == nil {
			t.Errorf("%v: signature of type %v accepted", kt, other)
		}
	}
	// BLS: version 0 and unknown versions are refused, versions are not interchangeable.
	bls := keys[BLS]
	for _, v := range []uint8{0, 3, 254} {
		if _, err := bls.Sign(msg, v); !errors.Is(err, ErrInvalidSigningVersion) {
			t.Errorf("BLS Sign version %d: %v, want ErrInvalidSigningVersion", v, err)
		}
		if err := pub(BLS).Verify(msg, Signature{Type: BLS, Bytes: make([]byte, 96)}, v); !errors.Is(err, ErrInvalidSigningVersion) {
			t.Errorf("BLS Verify version %d: %v, want ErrInvalidSigningVersion", v, err)
		}
	}
	v1, _ := bls.Sign(msg, SignVersion1)
	v2, _ := bls.Sign(msg, SignVersion2)
	if err := pub(BLS).Verify(msg, v1, SignVersion1); err != nil {
		t.Errorf("BLS v1 refused by Verify(v1): %v", err)
	}
	if pub(BLS).Verify(msg, v1, SignVersion2) == nil || pub(BLS).Verify(msg, v2, SignVersion1) == nil {
		t.Error("BLS versions 1 and 2 are interchangeable")
	}
	// The augmented scheme signs pk ‖ msg under the AUG DST.
	sk, _ := blsSecretKey(bls.Bytes)
	want := new(blst.P2Affine).Sign(sk, append(bytes.Clone(pub(BLS).Bytes), msg...), []byte("BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_AUG_")).Compress()
	if !bytes.Equal(v1.Bytes, want) {
		t.Error("BLS version 1 is not the augmented scheme over pk ‖ msg")
	}
	pop, _ := bls.ProvePossession()
	if err := pub(BLS).VerifyPossession(pop); err != nil {
		t.Errorf("proof of possession refused: %v", err)
	}
	if pub(BLS).VerifyPossession(v2) == nil {
		t.Error("a signature was accepted as a proof of possession")
	}
	if _, err := keys[P256].ProvePossession(); err == nil {
		t.Error("P-256 proof of possession")
	}
	if err := pub(Ed25519).VerifyPossession(pop); err == nil {
		t.Error("ed25519 VerifyPossession")
	}
}

// TestSignaturesDeterministicAndLowS: every scheme is deterministic (RFC 6979
// for ECDSA), and ECDSA signatures have S in the low half of the order.
func TestSignaturesDeterministicAndLowS(t *testing.T) {
	halfK1 := new(big.Int).Rsh(secp256k1N, 1)
	halfP256 := new(big.Int).Rsh(p256N, 1)
	for _, kt := range KeyTypes {
		sk, err := GeneratePrivateKey(kt, nil)
		if err != nil {
			t.Fatal(err)
		}
		pk, _ := sk.Public()
		versions := []uint8{SignVersion2}
		if kt == BLS {
			versions = []uint8{SignVersion1, SignVersion2, SignVersionLatest}
		}
		n := 64
		if kt == BLS {
			n = 4
		}
		for i := 0; i < n; i++ {
			msg := []byte{0x03, byte(i), byte(i >> 8), 0xee}
			for _, v := range versions {
				a, err := sk.Sign(msg, v)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := sk.Sign(msg, v)
				if !bytes.Equal(a.Bytes, b.Bytes) {
					t.Fatalf("%v v%d: two signatures of the same message differ", kt, v)
				}
				if err := pk.Verify(msg, a, v); err != nil {
					t.Fatalf("%v v%d: %v", kt, v, err)
				}
				s := new(big.Int).SetBytes(a.Bytes[32:64])
				switch kt {
				case Secp256k1:
					if s.Cmp(halfK1) > 0 {
						t.Fatalf("secp256k1 signature with high S")
					}
				case P256:
					if s.Cmp(halfP256) > 0 {
						t.Fatalf("P-256 signature with high S")
					}
				}
			}
		}
		// BLS versions 2 and 255 are the same scheme.
		if kt == BLS {
			a, _ := sk.Sign([]byte{1}, SignVersion2)
			b, _ := sk.Sign([]byte{1}, SignVersionLatest)
			if !bytes.Equal(a.Bytes, b.Bytes) {
				t.Error("BLS versions 2 and 255 differ")
			}
		}
	}
}

func TestBase58LengthBound(t *testing.T) {
	long := strings.Repeat("z", 100000)
	if _, err := ParseSignature(long); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("100000-character signature: %v", err)
	}
	sig := EncodeBase58Check(prefixBLsig, bytes.Repeat([]byte{0xff}, 96))
	if _, err := decodeBase58Check(sig); err != nil || len(sig) > maxBase58Check {
		t.Errorf("longest form (%d characters) refused: %v", len(sig), err)
	}
}
