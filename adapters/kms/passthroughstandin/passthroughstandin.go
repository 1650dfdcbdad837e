// Package passthroughstandin is the "KMS" of ECAD Labs' mock enclave
// (confidential_signer_mock), for tests only (sigil-enclave --kms
// passthrough): a sealed blob is the plain key, so whoever holds a blob
// holds the key. Never use it with a real key.
package passthroughstandin

import (
	"context"

	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// KMS passes plaintext through. It implements enclaveside.KMSProvider.
type KMS struct{}

// Seal returns a copy of plain.
func (KMS) Seal(plain []byte) ([]byte, error) { return append([]byte(nil), plain...), nil }

// Open returns a copy of blob.
func (KMS) Open(blob []byte) ([]byte, error) { return append([]byte(nil), blob...), nil }

// ForSession implements enclaveside.KMSProvider.
func (KMS) ForSession(context.Context, enclaveside.Credentials) (enclaveside.SessionKMS, error) {
	return session{}, nil
}

type session struct{}

func (session) Seal(_ context.Context, plain []byte) ([]byte, error) { return KMS{}.Seal(plain) }
func (session) Open(_ context.Context, blob []byte) ([]byte, error)  { return KMS{}.Open(blob) }
func (session) Close() error                                         { return nil }

var _ enclaveside.KMSProvider = KMS{}
