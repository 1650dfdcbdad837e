// Package enclaveside declares the ports of Sigil's enclave application
// (cmd/sigil-enclave, whose rules are domain/enclave): what the enclave
// needs from the world outside its rules. A KMS seals and opens key blobs
// for one session, with the credentials that session's Initialize brought
// (Cloud KMS through a Workload Identity provider; the stand-ins for
// development and tests); a key codec is the plaintext format of a sealed
// key (the enclave-signer protocol's private key map); a token source
// gives the attestation token of the attested channel. The daemon's ports
// (the enclave seen from the daemon) are in package ports.
package enclaveside

import (
	"context"
	"fmt"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// ConfidentialSpaceCredentials is the Confidential Space Initialize
// payload: the Workload Identity Pool provider whose attestation condition
// grants KMS access, and the Cloud KMS key the session's blobs are sealed
// under.
type ConfidentialSpaceCredentials struct {
	WIPProviderPath   string
	EncryptionKeyPath string
}

// AWSCredentials is the AWS Nitro Initialize payload: credentials for AWS
// KMS, the key and its region. String and GoString never show the secrets.
type AWSCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    *string
	EncryptionKeyID string
	Region          string
}

// String implements fmt.Stringer without revealing the secrets.
func (c AWSCredentials) String() string {
	return fmt.Sprintf("enclaveside.AWSCredentials{AccessKeyID:%q, SecretAccessKey:(redacted), SessionToken:%s, EncryptionKeyID:%q, Region:%q}",
		c.AccessKeyID, map[bool]string{true: "(redacted)", false: "(none)"}[c.SessionToken != nil], c.EncryptionKeyID, c.Region)
}

// GoString implements fmt.GoStringer without revealing the secrets.
func (c AWSCredentials) GoString() string { return c.String() }

// Credentials is what one session's Initialize carries: exactly one of the
// platforms' payloads.
type Credentials struct {
	ConfidentialSpace *ConfidentialSpaceCredentials
	AWS               *AWSCredentials
}

// SessionKMS seals and opens the key blobs of one session (one
// connection). Implementations must not put plaintext or ciphertext into
// their errors (their text is sent to the client); the enclave zeroes the
// plaintext it passes to Seal and the plaintext Open returns. Calls carry
// a deadline.
type SessionKMS interface {
	Seal(ctx context.Context, plain []byte) ([]byte, error)
	Open(ctx context.Context, blob []byte) ([]byte, error)
	// Close releases what the session held (connections, tokens). The
	// enclave calls it once, when the session ends.
	Close() error
}

// KMSProvider gives a session its KMS when the session's Initialize
// arrives: a Cloud KMS client authenticated through the Workload Identity
// provider and bound to the key that Initialize names, for example. An
// error fails that Initialize (the session stays uninitialized and may try
// again); its text is sent to the client, so it must hold no secret.
type KMSProvider interface {
	ForSession(ctx context.Context, creds Credentials) (SessionKMS, error)
}

// KeyCodec is the plaintext format of a sealed key: what the KMS seals
// (enclave-signer's CBOR private key map, so that blobs are
// interchangeable with ECAD Labs' enclave). Encoded bytes are secret: the
// caller zeroes them. Errors never contain key material.
type KeyCodec interface {
	MarshalKey(sk tezos.PrivateKey) ([]byte, error)
	UnmarshalKey(plain []byte) (tezos.PrivateKey, error)
}

// TokenSource gives the enclave's current attestation token (a compact
// JWT signed by Google's attestation service, bound to the TLS key of the
// attested channel), or an error when it holds no valid one.
type TokenSource interface {
	CurrentToken() (string, error)
}
