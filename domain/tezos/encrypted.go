package tezos

import (
	"bytes"
	"crypto/sha512"
	"errors"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/pbkdf2"
)

// Encrypted secret key prefixes (edesk…, spesk…, p2esk…, BLesk…), and the
// octez-client encryption: an 8-byte salt, then NaCl secretbox (zero nonce)
// of the unencrypted key's payload under PBKDF2-HMAC-SHA512(passphrase,
// salt, 32768 iterations, 32 bytes).
var (
	prefixEdesk = []byte{7, 90, 60, 179, 41}
	prefixSpesk = []byte{9, 237, 241, 174, 150}
	prefixP2esk = []byte{9, 48, 57, 115, 171}
	prefixBLesk = []byte{2, 5, 30, 53, 25}
)

const (
	encSaltLen    = 8
	encIterations = 32768
)

// ErrPassphrase is returned when an encrypted secret key does not open with
// the passphrase given (or none was given).
var ErrPassphrase = errors.New("wrong passphrase for the encrypted secret key")

// IsEncryptedSecretKey reports whether s looks like an encrypted Tezos secret
// key (its base58 prefix only; the checksum is not verified).
func IsEncryptedSecretKey(s string) bool {
	for _, p := range []string{"edesk", "spesk", "p2esk", "BLesk"} {
		if len(s) > len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

// DecryptSecretKey returns the secret key s, decrypting it with passphrase
// when it is encrypted (edesk…, spesk…, p2esk…, BLesk…, as octez-client
// writes them); an unencrypted key (edsk…, spsk…, p2sk…, BLsk…) is parsed
// as by ParsePrivateKey and the passphrase ignored. Errors never contain the
// key or the passphrase; a wrong passphrase gives ErrPassphrase.
func DecryptSecretKey(s string, passphrase []byte) (PrivateKey, error) {
	if !IsEncryptedSecretKey(s) {
		return ParsePrivateKey(s)
	}
	raw, err := decodeBase58Check(s)
	if err != nil {
		return PrivateKey{}, errors.New("invalid encrypted secret key: bad base58 or checksum")
	}
	defer clear(raw)
	var t KeyType
	switch {
	case bytes.HasPrefix(raw, prefixEdesk):
		t = Ed25519
	case bytes.HasPrefix(raw, prefixSpesk):
		t = Secp256k1
	case bytes.HasPrefix(raw, prefixP2esk):
		t = P256
	case bytes.HasPrefix(raw, prefixBLesk):
		t = BLS
	default:
		return PrivateKey{}, errors.New("invalid encrypted secret key: unknown prefix")
	}
	body := raw[5:]
	if len(body) != encSaltLen+32+secretbox.Overhead {
		return PrivateKey{}, errors.New("invalid encrypted secret key: wrong length")
	}
	if len(passphrase) == 0 {
		return PrivateKey{}, ErrPassphrase
	}
	salt, box := body[:encSaltLen], body[encSaltLen:]
	k := pbkdf2.Key(passphrase, salt, encIterations, 32, sha512.New)
	var key [32]byte
	copy(key[:], k)
	clear(k)
	var nonce [24]byte
	plain, ok := secretbox.Open(nil, box, &nonce, &key)
	clear(key[:])
	if !ok {
		return PrivateKey{}, ErrPassphrase
	}
	defer clear(plain)
	if t == BLS {
		be := reversed(plain) // Octez serializes the BLS scalar little-endian
		defer clear(be)
		return NewPrivateKey(t, be)
	}
	return NewPrivateKey(t, plain)
}
