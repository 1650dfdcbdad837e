package tezos_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/sigil-signer/sigil/domain/tezos"
)

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
)

// checkNoSecret fails if err's text contains the secret in any usual
// spelling (raw, hex, base64, or the PEM/base58 text itself).
func checkNoSecret(t *testing.T, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if len(s) < 8 {
			continue
		}
		for _, form := range []string{string(s), hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)),
			base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s)} {
			if strings.Contains(msg, form) {
				t.Fatalf("error message contains secret material (%d bytes)", len(s))
			}
		}
		// Also any 12-character base64/base58 window of a textual secret
		// (PEM body, base58 key).
		if str := string(s); len(str) >= 12 {
			for i := 0; i+12 <= len(str); i += 3 {
				if w := str[i : i+12]; isB64(w) && strings.Contains(msg, w) {
					t.Fatalf("error message contains part of the secret input")
				}
			}
		}
	}
}

func isB64(s string) bool {
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// secp256k1 keys, which Go's x509 cannot marshal, encoded by hand.
type sec1Key struct {
	Version    int
	PrivateKey []byte
	Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type algID struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pkcs8Key struct {
	Version    int
	Algorithm  algID
	PrivateKey []byte
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func secp256k1SEC1(t *testing.T, priv *secp256k1.PrivateKey, withCurve, withPub bool) []byte {
	t.Helper()
	scalar := priv.Key.Bytes()
	k := sec1Key{Version: 1, PrivateKey: scalar[:]}
	if withCurve {
		k.Curve = oidSecp256k1
	}
	if withPub {
		pub := priv.PubKey().SerializeUncompressed()
		k.PublicKey = asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}
	}
	return mustMarshal(t, k)
}

func ecPKCS8(t *testing.T, curve asn1.ObjectIdentifier, sec1 []byte) []byte {
	t.Helper()
	params := mustMarshal(t, curve)
	return mustMarshal(t, pkcs8Key{Algorithm: algID{Algorithm: oidECPublicKey, Parameters: asn1.RawValue{FullBytes: params}}, PrivateKey: sec1})
}

func TestImportGoKeys(t *testing.T) {
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	p256Priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256PKCS8, err := x509.MarshalPKCS8PrivateKey(p256Priv)
	if err != nil {
		t.Fatal(err)
	}
	p256SEC1, err := x509.MarshalECPrivateKey(p256Priv)
	if err != nil {
		t.Fatal(err)
	}
	p256Scalar, err := p256Priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p256Pub := elliptic.MarshalCompressed(elliptic.P256(), p256Priv.X, p256Priv.Y)
	k1, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	k1Scalar := k1.Key.Bytes()
	k1Pub := k1.PubKey().SerializeCompressed()

	cases := []struct {
		name   string
		data   []byte
		typ    tezos.KeyType
		scalar []byte
		pub    []byte
	}{
		{"ed25519 PKCS#8 PEM", pemOf("PRIVATE KEY", edDER), tezos.Ed25519, edPriv.Seed(), edPub},
		{"ed25519 PKCS#8 DER", edDER, tezos.Ed25519, edPriv.Seed(), edPub},
		{"P-256 PKCS#8 PEM", pemOf("PRIVATE KEY", p256PKCS8), tezos.P256, p256Scalar, p256Pub},
		{"P-256 SEC1 PEM", pemOf("EC PRIVATE KEY", p256SEC1), tezos.P256, p256Scalar, p256Pub},
		{"P-256 SEC1 DER", p256SEC1, tezos.P256, p256Scalar, p256Pub},
		{"secp256k1 SEC1 PEM", pemOf("EC PRIVATE KEY", secp256k1SEC1(t, k1, true, true)), tezos.Secp256k1, k1Scalar[:], k1Pub},
		{"secp256k1 SEC1 no public key", pemOf("EC PRIVATE KEY", secp256k1SEC1(t, k1, true, false)), tezos.Secp256k1, k1Scalar[:], k1Pub},
		{"secp256k1 PKCS#8 PEM", pemOf("PRIVATE KEY", ecPKCS8(t, oidSecp256k1, secp256k1SEC1(t, k1, false, true))), tezos.Secp256k1, k1Scalar[:], k1Pub},
		{"secp256k1 PKCS#8 DER, curve in both", ecPKCS8(t, oidSecp256k1, secp256k1SEC1(t, k1, true, true)), tezos.Secp256k1, k1Scalar[:], k1Pub},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parse := tezos.ParsePrivateKeyDER
			if bytes.HasPrefix(c.data, []byte("-----")) {
				parse = tezos.ParsePrivateKeyPEM
			}
			for _, p := range []func([]byte) (tezos.PrivateKey, error){parse, tezos.ParsePrivateKeyAny} {
				sk, err := p(c.data)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				if sk.Type != c.typ || !bytes.Equal(sk.Bytes, c.scalar) {
					t.Fatalf("parsed a %v key with different secret bytes, want %v", sk.Type, c.typ)
				}
				pk := mustPublic(t, sk)
				if !bytes.Equal(pk.Bytes, c.pub) {
					t.Fatalf("public key %x, want %x", pk.Bytes, c.pub)
				}
			}
		})
	}
}

// TestImportFixtures parses the OpenSSL-generated files of testdata and
// compares the public keys with what OpenSSL derives for them.
func TestImportFixtures(t *testing.T) {
	cases := []struct {
		file string
		typ  tezos.KeyType
		pub  string // hex, from openssl pkey/ec -pubout
	}{
		{"ed25519-pkcs8.pem", tezos.Ed25519, "853ccb4cf311a1215cadc95e8e45ccb081b08a3cc319703ed29ddd0d72f79fc0"},
		{"ed25519-pkcs8.der", tezos.Ed25519, "853ccb4cf311a1215cadc95e8e45ccb081b08a3cc319703ed29ddd0d72f79fc0"},
		{"secp256k1-sec1.pem", tezos.Secp256k1, "0340b9a914d50867f9d6c024fa5bd33b61ce5a25846198374f7698838ad00da9ed"},
		{"secp256k1-pkcs8.pem", tezos.Secp256k1, "0340b9a914d50867f9d6c024fa5bd33b61ce5a25846198374f7698838ad00da9ed"},
		{"p256-sec1.pem", tezos.P256, "023a0bc6c8b4f979005e9c15616ebbef5c971ca764fdb20876802e650be87b50ab"},
		{"p256-pkcs8.pem", tezos.P256, "023a0bc6c8b4f979005e9c15616ebbef5c971ca764fdb20876802e650be87b50ab"},
	}
	for _, c := range cases {
		data, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		sk, err := tezos.ParsePrivateKeyAny(data)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		pk := mustPublic(t, sk)
		if sk.Type != c.typ || hex.EncodeToString(pk.Bytes) != c.pub {
			t.Errorf("%s: got %v key %x, want %v key %s", c.file, sk.Type, pk.Bytes, c.typ, c.pub)
		}
	}
	// The same key as PEM, DER and Tezos base58 all parse to the same thing.
	pemKey, _ := os.ReadFile(filepath.Join("testdata", "ed25519-pkcs8.pem"))
	a, err := tezos.ParsePrivateKeyAny(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tezos.ParsePrivateKeyAny([]byte("\n  unencrypted:" + a.Base58() + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes, b.Bytes) || a.Type != b.Type {
		t.Error("the base58 form of a PEM key does not parse back to the same key")
	}

	for file, want := range map[string]string{
		"p256-encrypted-pkcs8.pem": "encrypted",
		"p256-encrypted-sec1.pem":  "encrypted",
		"p384-sec1.pem":            "unsupported EC curve 1.3.132.0.34",
	} {
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = tezos.ParsePrivateKeyAny(data)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", file, err, want)
		}
		checkNoSecret(t, err, data)
	}
}

// TestImportOpenSSL generates keys with the openssl tool, when there is one,
// and compares the public keys it derives with ours.
func TestImportOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: only the checked-in fixtures cover OpenSSL output")
		return
	}
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %s: %v", args[0], err)
		}
		return out
	}
	cases := []struct {
		gen    []string
		pubCmd []string // prints the DER SubjectPublicKeyInfo with a compressed point
		typ    tezos.KeyType
		size   int
	}{
		{[]string{"genpkey", "-algorithm", "ed25519", "-out", "k.pem"}, []string{"pkey", "-in", "k.pem", "-pubout", "-outform", "DER"}, tezos.Ed25519, 32},
		{[]string{"ecparam", "-name", "secp256k1", "-genkey", "-out", "k.pem"}, []string{"ec", "-in", "k.pem", "-pubout", "-conv_form", "compressed", "-outform", "DER"}, tezos.Secp256k1, 33},
		{[]string{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem"}, []string{"ec", "-in", "k.pem", "-pubout", "-conv_form", "compressed", "-outform", "DER"}, tezos.P256, 33},
		{[]string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-out", "k.pem"}, []string{"ec", "-in", "k.pem", "-pubout", "-conv_form", "compressed", "-outform", "DER"}, tezos.Secp256k1, 33},
		{[]string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"}, []string{"ec", "-in", "k.pem", "-pubout", "-conv_form", "compressed", "-outform", "DER"}, tezos.P256, 33},
	}
	for _, c := range cases {
		for i := 0; i < 3; i++ {
			run(c.gen...)
			spki := run(c.pubCmd...)
			want := spki[len(spki)-c.size:]
			der := run("pkey", "-in", "k.pem", "-outform", "DER")
			pemData, err := os.ReadFile(filepath.Join(dir, "k.pem"))
			if err != nil {
				t.Fatal(err)
			}
			for _, data := range [][]byte{pemData, der} {
				sk, err := tezos.ParsePrivateKeyAny(data)
				if err != nil {
					t.Fatalf("%v key from openssl %s: %v", c.typ, c.gen[0], err)
				}
				pk := mustPublic(t, sk)
				if sk.Type != c.typ || !bytes.Equal(pk.Bytes, want) {
					t.Fatalf("openssl %s: we derive %v %x, openssl %x", c.gen[0], sk.Type, pk.Bytes, want)
				}
			}
		}
	}
}

func TestImportErrors(t *testing.T) {
	k1, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := k1.Key.Bytes()
	other, _ := secp256k1.GeneratePrivateKey()
	mismatched := sec1Key{Version: 1, PrivateKey: secret[:], Curve: oidSecp256k1}
	otherPub := other.PubKey().SerializeUncompressed()
	mismatched.PublicKey = asn1.BitString{Bytes: otherPub, BitLength: 8 * len(otherPub)}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	pubDER, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	n := secp256k1.S256().N.Bytes()
	p256N := elliptic.P256().Params().N.Bytes()
	valid := secp256k1SEC1(t, k1, true, true)

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"no curve", pemOf("EC PRIVATE KEY", mustMarshal(t, sec1Key{Version: 1, PrivateKey: secret[:]})), "does not name its curve"},
		{"mismatched public key", pemOf("EC PRIVATE KEY", mustMarshal(t, mismatched)), "does not match"},
		{"secp256k1 scalar zero", pemOf("EC PRIVATE KEY", mustMarshal(t, sec1Key{Version: 1, PrivateKey: make([]byte, 32), Curve: oidSecp256k1})), "out of range"},
		{"secp256k1 scalar = n", pemOf("EC PRIVATE KEY", mustMarshal(t, sec1Key{Version: 1, PrivateKey: n, Curve: oidSecp256k1})), "out of range"},
		{"P-256 scalar = n", pemOf("EC PRIVATE KEY", mustMarshal(t, sec1Key{Version: 1, PrivateKey: p256N, Curve: oidP256})), "out of range"},
		{"scalar too long", pemOf("EC PRIVATE KEY", mustMarshal(t, sec1Key{Version: 1, PrivateKey: append([]byte{1}, secret[:]...), Curve: oidSecp256k1})), "33 bytes"},
		{"bad SEC1 version", pemOf("EC PRIVATE KEY", mustMarshal(t, sec1Key{Version: 2, PrivateKey: secret[:], Curve: oidSecp256k1})), "version 2"},
		{"PKCS#8 curve disagrees", pemOf("PRIVATE KEY", ecPKCS8(t, oidP256, valid)), "names curve"},
		{"RSA", pemOf("PRIVATE KEY", rsaDER), "unsupported key algorithm 1.2.840.113549.1.1.1"},
		{"P-384", pemOf("PRIVATE KEY", p384DER), "unsupported EC curve"},
		{"public key only", pemOf("PUBLIC KEY", pubDER), `found "PUBLIC KEY"`},
		{"SEC1 in a PKCS#8 block", pemOf("PRIVATE KEY", valid), "SEC 1"},
		{"PKCS#8 in a SEC1 block", pemOf("EC PRIVATE KEY", ecPKCS8(t, oidSecp256k1, valid)), "PKCS#8"},
		{"encrypted PKCS#8 block", pemOf("ENCRYPTED PRIVATE KEY", valid), "encrypted"},
		{"trailing DER", append(bytes.Clone(valid), 0x00), "trailing data"},
		{"truncated DER", valid[:len(valid)-5], "not a DER-encoded"},
		{"empty", []byte(" \n\t"), "empty"},
		{"binary junk", []byte{0xff, 0x00, 0x12}, "unrecognized format"},
		{"bad base58", []byte("edsk3gUfUPyBSfrS9CCgmCiQsTCHGkviBDusMxDJstFtojtc1zcpsi"), "checksum"},
		{"not a secret key", []byte("tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"), "not an edsk"},
		{"encrypted octez key", []byte("encrypted:edesk1GXwWmGjXiLHBKxGBxwmNvG21vKBh6FBxc4CyJ8adQQE2avP5vBB57ZUZ93Anm7i4k8RmsHaPzVAvpnHkFF"), "encrypted"},
		{"PEM without block", []byte("-----BEGIN PRIVATE KEY-----\nnot base64\n"), "no PEM block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tezos.ParsePrivateKeyAny(c.data)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to mention %q", err, c.want)
			}
			checkNoSecret(t, err, secret[:], c.data)
		})
	}
}

// TestImportPKCS8v2 accepts RFC 5958 version 2 keys, which carry the public
// key after the private one.
func TestImportPKCS8v2(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	seed := mustMarshal(t, priv.Seed())
	type v2 struct {
		Version    int
		Algorithm  algID
		PrivateKey []byte
		PublicKey  asn1.BitString `asn1:"optional,tag:1"`
	}
	der := mustMarshal(t, v2{Version: 1, Algorithm: algID{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 112}}, PrivateKey: seed,
		PublicKey: asn1.BitString{Bytes: pub, BitLength: 256}})
	sk, err := tezos.ParsePrivateKeyDER(der)
	if err != nil {
		t.Fatal(err)
	}
	if pk := mustPublic(t, sk); !bytes.Equal(pk.Bytes, pub) {
		t.Fatal("wrong public key")
	}
}
