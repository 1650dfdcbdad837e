// Package localstandin is a stand-in for a KMS, for development and tests
// (sigil-enclave --kms local, sigil serve --dev): it seals key blobs with
// AES-256-GCM under a key kept in a local file, whatever the session's
// Initialize says. It offers none of a KMS's protection (whoever reads
// the file opens every blob); the production KMS is adapters/kms/gcpkms.
package localstandin

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// KMS seals with AES-256-GCM under a key kept in a local file. A blob is
// nonce (12 bytes) ‖ ciphertext ‖ tag. It is safe for concurrent use and
// implements enclaveside.KMSProvider: every session gets this KMS.
type KMS struct {
	aead cipher.AEAD
}

// ErrOpen is returned for a blob that does not authenticate (tampered,
// truncated, or sealed under another key).
var ErrOpen = errors.New("cannot open sealed key: authentication failed")

// New loads the 32-byte key from path, creating it (random, mode 0600) if
// the file does not exist.
func New(path string) (*KMS, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, key); err != nil {
			return nil, fmt.Errorf("kms key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) { // created concurrently: use that one
			clear(key)
			return New(path)
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
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kms key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kms key: %w", err)
	}
	return &KMS{aead: aead}, nil
}

// Seal encrypts plain under a fresh random nonce.
func (l *KMS) Seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, l.aead.NonceSize(), l.aead.NonceSize()+len(plain)+l.aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	return l.aead.Seal(nonce, nonce, plain, nil), nil
}

// Open decrypts and authenticates blob.
func (l *KMS) Open(blob []byte) ([]byte, error) {
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

// ForSession implements enclaveside.KMSProvider: the session seals with
// this key file, whatever its credentials.
func (l *KMS) ForSession(context.Context, enclaveside.Credentials) (enclaveside.SessionKMS, error) {
	return session{l}, nil
}

type session struct{ k *KMS }

func (s session) Seal(_ context.Context, plain []byte) ([]byte, error) { return s.k.Seal(plain) }
func (s session) Open(_ context.Context, blob []byte) ([]byte, error)  { return s.k.Open(blob) }
func (session) Close() error                                           { return nil }

var _ enclaveside.KMSProvider = (*KMS)(nil)
