package tezos

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Object identifiers of the key algorithms and curves we import.
var (
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}         // RFC 8410
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1} // RFC 5480 id-ecPublicKey
	oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

// algorithmIdentifier is RFC 5280's AlgorithmIdentifier.
type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// pkcs8 is RFC 5958's OneAsymmetricKey (PKCS#8 PrivateKeyInfo); the optional
// attributes and public key that may follow are ignored.
type pkcs8 struct {
	Version    int
	Algorithm  algorithmIdentifier
	PrivateKey []byte
}

// encryptedPKCS8 is PKCS#8's EncryptedPrivateKeyInfo, only recognized to
// report it clearly.
type encryptedPKCS8 struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

// sec1 is SEC 1 / RFC 5915's ECPrivateKey.
type sec1 struct {
	Version    int
	PrivateKey []byte
	Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

// ParsePrivateKeyPEM parses a PEM file holding an unencrypted private key:
// "PRIVATE KEY" (PKCS#8: ed25519, P-256 or secp256k1) or "EC PRIVATE KEY"
// (SEC 1: P-256 or secp256k1). Other blocks before it, such as the "EC
// PARAMETERS" block openssl ecparam writes, are skipped. Encrypted keys are
// refused. Errors never contain key material.
func ParsePrivateKeyPEM(data []byte) (PrivateKey, error) {
	rest := data
	var skipped []string
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		switch block.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY":
			if _, ok := block.Headers["DEK-Info"]; ok || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
				clear(block.Bytes)
				return PrivateKey{}, fmt.Errorf("invalid secret key: the PEM %q block is encrypted; decrypt it first (e.g. openssl pkey -in key.pem -out plain.pem)", block.Type)
			}
			var (
				sk  PrivateKey
				err error
			)
			if block.Type == "PRIVATE KEY" {
				sk, err = parsePKCS8(block.Bytes)
			} else {
				sk, err = parseSEC1(block.Bytes, nil)
			}
			clear(block.Bytes)
			if err != nil {
				return PrivateKey{}, fmt.Errorf("invalid secret key in PEM %q block: %w", block.Type, err)
			}
			return sk, nil
		case "ENCRYPTED PRIVATE KEY":
			clear(block.Bytes)
			return PrivateKey{}, errors.New("invalid secret key: the PEM holds an encrypted PKCS#8 key; decrypt it first (e.g. openssl pkey -in key.pem -out plain.pem)")
		case "EC PARAMETERS":
			skipped = append(skipped, block.Type)
		default:
			clear(block.Bytes)
			skipped = append(skipped, block.Type)
		}
	}
	if len(skipped) > 0 {
		return PrivateKey{}, fmt.Errorf("invalid secret key: no \"PRIVATE KEY\" or \"EC PRIVATE KEY\" PEM block (found %s)", quoteList(skipped))
	}
	return PrivateKey{}, errors.New("invalid secret key: no PEM block found")
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// ParsePrivateKeyDER parses a DER-encoded unencrypted private key: PKCS#8
// (ed25519, P-256 or secp256k1) or SEC 1 ECPrivateKey (P-256 or secp256k1,
// which must then name its curve). Errors never contain key material.
func ParsePrivateKeyDER(der []byte) (PrivateKey, error) {
	var err error
	var sk PrivateKey
	switch {
	case matches(der, &pkcs8{}):
		sk, err = parsePKCS8(der)
	case matches(der, &sec1{}):
		sk, err = parseSEC1(der, nil)
	case matches(der, &encryptedPKCS8{}):
		err = errors.New("an encrypted PKCS#8 key; decrypt it first")
	default:
		err = errors.New("not a DER-encoded PKCS#8 or SEC 1 private key")
	}
	if err != nil {
		return PrivateKey{}, fmt.Errorf("invalid secret key: %w", err)
	}
	return sk, nil
}

// matches reports whether der starts with a structure of v's shape. The
// decoded secret bytes are wiped.
func matches(der []byte, v wiper) bool {
	_, err := asn1.Unmarshal(der, v)
	v.wipe()
	return err == nil
}

type wiper interface{ wipe() }

func (p *pkcs8) wipe()          { clear(p.PrivateKey) }
func (s *sec1) wipe()           { clear(s.PrivateKey) }
func (e *encryptedPKCS8) wipe() { clear(e.EncryptedData) }

func parsePKCS8(der []byte) (PrivateKey, error) {
	var p pkcs8
	rest, err := asn1.Unmarshal(der, &p)
	defer clear(p.PrivateKey)
	if err != nil {
		if matches(der, &encryptedPKCS8{}) {
			return PrivateKey{}, errors.New("an encrypted PKCS#8 key; decrypt it first")
		}
		if matches(der, &sec1{}) {
			return PrivateKey{}, errors.New("a SEC 1 EC private key, not PKCS#8 (use the \"EC PRIVATE KEY\" PEM type)")
		}
		return PrivateKey{}, errors.New("malformed PKCS#8 structure")
	}
	if len(rest) != 0 {
		return PrivateKey{}, errors.New("trailing data after the PKCS#8 structure")
	}
	if p.Version != 0 && p.Version != 1 {
		return PrivateKey{}, fmt.Errorf("unsupported PKCS#8 version %d", p.Version)
	}
	switch {
	case p.Algorithm.Algorithm.Equal(oidEd25519):
		if len(p.Algorithm.Parameters.FullBytes) != 0 {
			return PrivateKey{}, errors.New("ed25519 PKCS#8 key with unexpected algorithm parameters")
		}
		var seed []byte
		rest, err := asn1.Unmarshal(p.PrivateKey, &seed)
		defer clear(seed)
		if err != nil || len(rest) != 0 {
			return PrivateKey{}, errors.New("malformed ed25519 private key (want an OCTET STRING holding the 32-byte seed)")
		}
		if len(seed) != 32 {
			return PrivateKey{}, fmt.Errorf("ed25519 seed of %d bytes, want 32", len(seed))
		}
		return NewPrivateKey(Ed25519, seed)
	case p.Algorithm.Algorithm.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(p.Algorithm.Parameters.FullBytes, &curve); err != nil || len(rest) != 0 {
			return PrivateKey{}, errors.New("EC PKCS#8 key without a named curve (explicit curve parameters are not supported)")
		}
		return parseSEC1(p.PrivateKey, curve)
	}
	return PrivateKey{}, fmt.Errorf("unsupported key algorithm %v (want ed25519 %v or EC %v with P-256 or secp256k1)",
		p.Algorithm.Algorithm, oidEd25519, oidECPublicKey)
}

// parseSEC1 parses an ECPrivateKey. curve is the curve named by an
// enclosing PKCS#8 structure, if any; the key's own must agree with it.
func parseSEC1(der []byte, curve asn1.ObjectIdentifier) (PrivateKey, error) {
	var s sec1
	rest, err := asn1.Unmarshal(der, &s)
	defer clear(s.PrivateKey)
	if err != nil {
		if curve == nil {
			if matches(der, &pkcs8{}) {
				return PrivateKey{}, errors.New("a PKCS#8 key, not SEC 1 (use the \"PRIVATE KEY\" PEM type)")
			}
		}
		return PrivateKey{}, errors.New("malformed SEC 1 EC private key")
	}
	if len(rest) != 0 {
		return PrivateKey{}, errors.New("trailing data after the SEC 1 EC private key")
	}
	if s.Version != 1 {
		return PrivateKey{}, fmt.Errorf("unsupported SEC 1 EC private key version %d (want 1)", s.Version)
	}
	switch {
	case curve == nil && s.Curve == nil:
		return PrivateKey{}, errors.New("SEC 1 EC private key does not name its curve")
	case curve == nil:
		curve = s.Curve
	case s.Curve != nil && !s.Curve.Equal(curve):
		return PrivateKey{}, fmt.Errorf("EC private key names curve %v but its PKCS#8 wrapper names %v", s.Curve, curve)
	}
	var t KeyType
	switch {
	case curve.Equal(oidP256):
		t = P256
	case curve.Equal(oidSecp256k1):
		t = Secp256k1
	default:
		return PrivateKey{}, fmt.Errorf("unsupported EC curve %v (want P-256 %v or secp256k1 %v)", curve, oidP256, oidSecp256k1)
	}
	// SEC 1 wants exactly 32 bytes; tolerate the zero padding or stripping
	// some encoders (older OpenSSL among them) are known for.
	k := s.PrivateKey
	for len(k) > 32 && k[0] == 0 {
		k = k[1:]
	}
	if len(k) > 32 {
		return PrivateKey{}, fmt.Errorf("%v private key of %d bytes, want 32", t, len(k))
	}
	scalar := make([]byte, 32)
	defer clear(scalar)
	copy(scalar[32-len(k):], k)
	if !validScalar(t, scalar) {
		return PrivateKey{}, fmt.Errorf("invalid %v secret key: scalar out of range", t)
	}
	sk, err := NewPrivateKey(t, scalar)
	if err != nil {
		return PrivateKey{}, err
	}
	if s.PublicKey.BitLength > 0 {
		pk, _ := sk.Public()
		if !ecPointMatches(s.PublicKey.RightAlign(), pk.Bytes) {
			sk.Zero()
			return PrivateKey{}, fmt.Errorf("the %v public key in the file does not match its private key", t)
		}
	}
	return sk, nil
}

// ecPointMatches reports whether encoded (a SEC 1 point, compressed or
// uncompressed) is the point whose compressed form is compressed.
func ecPointMatches(encoded, compressed []byte) bool {
	switch {
	case len(encoded) == 33:
		return bytes.Equal(encoded, compressed)
	case len(encoded) == 65 && encoded[0] == 4:
		// Compressed form: 02|03 by the parity of y, then x.
		y := encoded[33:]
		tag := byte(2 | y[31]&1)
		return compressed[0] == tag && bytes.Equal(encoded[1:33], compressed[1:])
	}
	return false
}

// ParsePrivateKeyAny parses a secret key in any supported form, detected
// from its content: PEM (see ParsePrivateKeyPEM), raw DER (see
// ParsePrivateKeyDER), or a Tezos base58 string (edsk…, spsk…, p2sk…, BLsk…,
// optionally written "unencrypted:…" as in octez-client's secret_keys file).
// Surrounding white space is ignored. Errors never contain key material.
func ParsePrivateKeyAny(data []byte) (PrivateKey, error) {
	if len(data) > 0 && data[0] == 0x30 {
		// A DER SEQUENCE ('0' is not a base58 character, so no base58 key
		// starts with it). Not trimmed: DER may end with white-space bytes.
		return ParsePrivateKeyDER(data)
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return PrivateKey{}, errors.New("invalid secret key: empty input")
	case bytes.Contains(trimmed, []byte("-----BEGIN ")):
		return ParsePrivateKeyPEM(trimmed)
	case utf8.Valid(trimmed) && isBase58Text(bytes.TrimPrefix(trimmed, []byte("unencrypted:"))):
		return ParsePrivateKey(string(bytes.TrimPrefix(trimmed, []byte("unencrypted:"))))
	case bytes.HasPrefix(trimmed, []byte("encrypted:")):
		return PrivateKey{}, errors.New("invalid secret key: encrypted secret keys are not supported, decrypt it first")
	}
	return PrivateKey{}, errors.New("invalid secret key: unrecognized format (want PEM, DER, or a Tezos edsk/spsk/p2sk/BLsk string)")
}

func isBase58Text(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if b58Index[c] < 0 {
			return false
		}
	}
	return true
}
