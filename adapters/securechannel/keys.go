// Package securechannel is the attested, mutually authenticated transport
// between the daemon and a Confidential Space enclave: TLS 1.3 only, the
// enclave's certificate self-signed for an ephemeral key and carrying the
// enclave's current attestation token (a private extension, TokenOID), the
// daemon's certificate self-signed for a key whose pin the enclave's launch
// configuration lists. The client (Client, Conn) verifies the token during
// the handshake, before any application byte, and keeps a connection only
// while a verified token bound to the connection's key is valid, refreshing
// it in band with the AttestationToken request; the server (Server) admits
// only pinned clients and gives the token AttestationToken answers
// (CurrentToken, the enclave's enclaveside.TokenSource). Over the channel
// runs the unchanged enclave protocol (4-byte length + CBOR frames,
// adapters/enclavewire).
package securechannel

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// ClientKey is the daemon's TLS identity: a self-signed certificate for its
// key, and the key's pin.
type ClientKey struct {
	Certificate tls.Certificate
	Pin         attestation.Pin
}

// String shows the pin, never the private key.
func (k ClientKey) String() string { return "securechannel.ClientKey(" + k.Pin.String() + ")" }

// GoString implements fmt.GoStringer like String.
func (k ClientKey) GoString() string { return k.String() }

// farFuture is RFC 5280's "no well-defined expiration date".
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// NewClientKey builds the daemon's identity for signer (ECDSA P-256 or
// Ed25519).
func NewClientKey(signer crypto.Signer) (ClientKey, error) {
	switch k := signer.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return ClientKey{}, fmt.Errorf("client key: ECDSA on %s (want P-256)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return ClientKey{}, fmt.Errorf("client key: %T (want ECDSA P-256 or Ed25519)", k)
	}
	der, err := selfSigned(signer, "sigil daemon", time.Now().Add(-time.Hour), farFuture, nil)
	if err != nil {
		return ClientKey{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return ClientKey{}, err
	}
	return ClientKey{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer, Leaf: cert},
		Pin:         attestation.PinOf(cert.RawSubjectPublicKeyInfo),
	}, nil
}

// selfSigned returns the DER of a certificate for signer's key, signed by
// itself.
func selfSigned(signer crypto.Signer, cn string, notBefore, notAfter time.Time, ext []pkix.Extension) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: cn},
		NotBefore:       notBefore,
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions: ext,
	}
	return x509.CreateCertificate(rand.Reader, tpl, tpl, signer.Public(), signer)
}

// ErrKeyExists is returned by GenerateClientKey when the file exists.
var ErrKeyExists = errors.New("client key file exists")

// GenerateClientKey creates a new ECDSA P-256 key and writes it to path as
// a PKCS#8 PEM file, atomically, mode 0600. It never replaces an existing
// file (a new key has a new pin, which the enclave's launch configuration
// would not list): it returns an error wrapping ErrKeyExists instead.
func GenerateClientKey(path string) (ClientKey, error) {
	if _, err := os.Lstat(path); err == nil {
		return ClientKey{}, fmt.Errorf("%w: %s (remove it first to replace the daemon's key)", ErrKeyExists, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return ClientKey{}, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ClientKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return ClientKey{}, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	err = atomicfile.Write(path, data, 0o600, nil)
	clear(data)
	if err != nil {
		return ClientKey{}, fmt.Errorf("client key %s: %w", path, err)
	}
	return NewClientKey(k)
}

// EnsureClientKey loads the key at path, or creates it if there is no file
// there; created says which.
func EnsureClientKey(path string) (key ClientKey, created bool, err error) {
	key, err = GenerateClientKey(path)
	if errors.Is(err, ErrKeyExists) {
		key, err = LoadClientKey(path)
		return key, false, err
	}
	return key, err == nil, err
}

// LoadClientKey reads a PKCS#8 PEM private key (ECDSA P-256 or Ed25519)
// written by GenerateClientKey or by `openssl genpkey`. A file that others
// than its owner may read or write is refused, as ssh refuses it.
func LoadClientKey(path string) (ClientKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return ClientKey{}, fmt.Errorf("client key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return ClientKey{}, fmt.Errorf("client key %s: mode %04o lets others read or write it (want 0600: chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ClientKey{}, fmt.Errorf("client key: %w", err)
	}
	defer clear(data)
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return ClientKey{}, fmt.Errorf("client key %s: not a PEM \"PRIVATE KEY\" (PKCS#8) file", path)
	}
	defer clear(block.Bytes)
	if b, _ := pem.Decode(rest); b != nil {
		return ClientKey{}, fmt.Errorf("client key %s: more than one PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return ClientKey{}, fmt.Errorf("client key %s: %v", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return ClientKey{}, fmt.Errorf("client key %s: %T is not a signing key", path, k)
	}
	ck, err := NewClientKey(signer)
	if err != nil {
		return ClientKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return ck, nil
}

// NewEphemeralKey returns a fresh ECDSA P-256 key for the enclave's side
// of the channel and the nonce that binds a token to it.
func NewEphemeralKey() (*ecdsa.PrivateKey, string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	nonce, err := KeyNonce(k.Public())
	return k, nonce, err
}

// KeyNonce returns attestation.NonceOf the DER SubjectPublicKeyInfo of pub.
func KeyNonce(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return attestation.NonceOf(spki), nil
}
