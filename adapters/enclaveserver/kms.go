package enclaveserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
)

// KMS stands in for Cloud KMS: it seals the CBOR encoding of a private key
// into a blob and opens such blobs again. Implementations must be safe for
// concurrent use and must not put plaintext into their errors.
type KMS interface {
	Seal(plain []byte) ([]byte, error)
	Open(blob []byte) ([]byte, error)
}

// PassthroughKMS is the upstream mock's "KMS": a blob is the plain CBOR private
// key. For tests only.
type PassthroughKMS struct{}

// Seal returns a copy of plain.
func (PassthroughKMS) Seal(plain []byte) ([]byte, error) { return append([]byte(nil), plain...), nil }

// Open returns a copy of blob.
func (PassthroughKMS) Open(blob []byte) ([]byte, error) { return append([]byte(nil), blob...), nil }

// LocalKMS seals with AES-256-GCM under a key kept in a local file. A blob is
// nonce (12 bytes) ‖ ciphertext ‖ tag.
type LocalKMS struct {
	aead cipher.AEAD
}

// ErrOpen is returned for a blob that does not authenticate (tampered,
// truncated, or sealed under another key).
var ErrOpen = errors.New("cannot open sealed key: authentication failed")

// NewLocalKMS loads the 32-byte key from path, creating it (random, mode 0600)
// if the file does not exist.
func NewLocalKMS(path string) (*LocalKMS, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, key); err != nil {
			return nil, fmt.Errorf("kms key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) { // created concurrently: use that one
			clear(key)
			return NewLocalKMS(path)
		}
		if err != nil {
			return nil, fmt.Errorf("kms key: %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("kms key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("kms key %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("kms key: %w", err)
	}
	defer clear(key)
	if len(key) != 32 {
		return nil, fmt.Errorf("kms key %s: %d bytes, want 32", path, len(key))
	}
	return newLocalKey(key)
}

func newLocalKey(key []byte) (*LocalKMS, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kms key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kms key: %w", err)
	}
	return &LocalKMS{aead: aead}, nil
}

// Seal encrypts plain under a fresh random nonce.
func (l *LocalKMS) Seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, l.aead.NonceSize(), l.aead.NonceSize()+len(plain)+l.aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	return l.aead.Seal(nonce, nonce, plain, nil), nil
}

// Open decrypts and authenticates blob.
func (l *LocalKMS) Open(blob []byte) ([]byte, error) {
	ns := l.aead.NonceSize()
	if len(blob) < ns+l.aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := l.aead.Open(nil, blob[:ns], blob[ns:], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
