// Package enclave holds the rules of Sigil's enclave (cmd/sigil-enclave),
// the other application of this repository: what a session of the
// enclave-signer protocol may do, whatever carries it. A session is one
// connection: it is initialized once, with a platform's credentials (which
// give it its KMS), and holds its own key chain, whose handles are indexes
// valid on that session only; it imports sealed blobs, imports plain keys
// (sealing them), generates keys, signs by handle or with a blob, gives
// public keys and BLS proofs of possession, and, on the attested channel,
// the enclave's attestation token. Every refusal is an *Error whose text
// is the one ECAD Labs' Rust enclave answers. A signature leaves a session
// only through its Guard (the seat of the enclave's own signing policy
// and high watermarks, issue 21).
//
// It depends on domain/tezos (keys, signing) and on its ports
// (ports/enclaveside: the KMS, the sealed key's plaintext format, the
// attestation token source); the wire protocol, the network and the cloud
// are adapters' business.
package enclave

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// Platform is the platform whose Initialize payload the enclave accepts.
type Platform string

// Platforms.
const (
	// PlatformConfidentialSpace: a Workload Identity provider and a Cloud
	// KMS key path (the default).
	PlatformConfidentialSpace Platform = "confidentialspace"
	// PlatformNitro: AWS credentials, a KMS key id and a region.
	PlatformNitro Platform = "nitro"
)

// Error is an enclave's refusal as the protocol carries it: a message and
// the error it comes from, outermost first, as ECAD Labs' enclave-signer
// displays its errors ("signer error: invalid handle").
type Error struct {
	Message string
	Source  *Error
}

// NewError builds an error chain from messages, outermost first.
func NewError(msgs ...string) *Error {
	var e *Error
	for i := len(msgs) - 1; i >= 0; i-- {
		e = &Error{Message: msgs[i], Source: e}
	}
	return e
}

// Error renders the chain as "message: source message: …".
func (e *Error) Error() string {
	var b strings.Builder
	for i, cur := 0, e; cur != nil; i, cur = i+1, cur.Source {
		if i > 0 {
			b.WriteString(": ")
		}
		b.WriteString(cur.Message)
	}
	return b.String()
}

// Refusals, with the Rust enclave's texts.
var (
	ErrUninitialized      = NewError("uninitialized")
	ErrAlreadyInitialized = NewError("already initialized")
	ErrInvalidHandle      = NewError("signer error", "invalid handle")
	ErrPopUnsupported     = NewError("signer error", "Proof of possession is not supported")
	ErrSigningVersion     = NewError("signer error", "invalid signing version")
)

// Categories of the Rust enclave's errors (the outermost message).
const (
	CategoryDeserialization = "deserialization error"
	CategorySerialization   = "serialization error"
	CategoryEncryption      = "encryption error"
	CategorySigner          = "signer error"
)

// MethodAttestationToken names the attested channel's request.
const MethodAttestationToken = "AttestationToken"

// ErrPlainChannel is the answer to AttestationToken on a connection that is
// not the attested channel.
var ErrPlainChannel = NewError(MethodAttestationToken + ": this connection is not the attested channel")

// ErrPlainImport is the answer to ImportUnencrypted on a plain connection
// of an enclave that serves the attested channel: the request carried a
// private key in the clear, which that enclave never accepts (the key is
// neither sealed nor loaded).
var ErrPlainImport = NewError("ImportUnencrypted refused",
	"this enclave serves the attested channel and this connection is not it: a plain connection carries the private key in the clear; import over the attested channel")

// Config configures an Enclave.
type Config struct {
	// Platform whose Initialize the sessions accept; default
	// PlatformConfidentialSpace.
	Platform Platform
	// KMS gives each session its KMS (required).
	KMS enclaveside.KMSProvider
	// Keys is the plaintext format of sealed keys (required).
	Keys enclaveside.KeyCodec
	// Tokens, when set, are the attested channel's tokens: the enclave
	// serves the attested channel, answers AttestationToken there, and
	// refuses ImportUnencrypted on any plain connection it also serves.
	Tokens enclaveside.TokenSource
	// KMSTimeout bounds each KMS call and each KMS.ForSession; default
	// 30 s.
	KMSTimeout time.Duration
	// Guard decides whether a signature may leave the enclave; nil lets
	// every signature the protocol allows leave (no guard).
	Guard Guard
}

// Enclave is the enclave's rules, shared by its sessions. It is safe for
// concurrent use; each Session is used by one goroutine at a time.
type Enclave struct {
	cfg      Config
	kmsCalls atomic.Int64
}

// New checks cfg and returns an Enclave.
func New(cfg Config) (*Enclave, error) {
	if cfg.KMS == nil || cfg.Keys == nil {
		return nil, errors.New("enclave: no KMS or no key codec")
	}
	switch cfg.Platform {
	case "":
		cfg.Platform = PlatformConfidentialSpace
	case PlatformConfidentialSpace, PlatformNitro:
	default:
		return nil, errors.New("enclave: unknown platform " + string(cfg.Platform))
	}
	if cfg.KMSTimeout <= 0 {
		cfg.KMSTimeout = 30 * time.Second
	}
	return &Enclave{cfg: cfg}, nil
}

// Platform returns the platform whose Initialize the enclave accepts.
func (e *Enclave) Platform() Platform { return e.cfg.Platform }

// Attested reports whether the enclave serves the attested channel.
func (e *Enclave) Attested() bool { return e.cfg.Tokens != nil }

// KMSCalls returns how many seals and opens the sessions asked of their
// KMS since the enclave started (Cloud KMS Encrypt and Decrypt calls with
// the Cloud KMS adapter).
func (e *Enclave) KMSCalls() int64 { return e.kmsCalls.Load() }

// Channel describes what carries a session.
type Channel struct {
	// Attested: the attested channel (TLS 1.3, a client whose key is
	// pinned); otherwise the plain protocol.
	Attested bool
	// ClientPin is the pin of the client's key on the attested channel.
	ClientPin attestation.Pin
}

// NewSession starts the session of a new connection carried by ch.
func (e *Enclave) NewSession(ch Channel) *Session {
	return &Session{e: e, ch: ch}
}

// checkInitialize accepts the Initialize payload of the enclave's platform
// only, with every field the enclave needs present.
func (e *Enclave) checkInitialize(c enclaveside.Credentials) *Error {
	if e.cfg.Platform == PlatformNitro {
		a := c.AWS
		if a == nil {
			return NewError(CategoryDeserialization, "invalid credentials: this enclave runs in AWS Nitro mode and expects AWS credentials")
		}
		if a.AccessKeyID == "" || a.SecretAccessKey == "" || a.EncryptionKeyID == "" || a.Region == "" {
			return NewError(CategoryEncryption, "invalid credentials: access_key_id, secret_access_key, encryption_key_id and region are required")
		}
		return nil
	}
	cs := c.ConfidentialSpace
	if cs == nil {
		return NewError(CategoryDeserialization, "invalid credentials: this enclave runs in Confidential Space mode and expects wip_provider_path and encryption_key_path")
	}
	if cs.WIPProviderPath == "" || cs.EncryptionKeyPath == "" {
		return NewError(CategoryEncryption, "invalid credentials: wip_provider_path and encryption_key_path are required")
	}
	return nil
}

// kmsContext bounds one KMS call by KMSTimeout and by ctx.
func (e *Enclave) kmsContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.KMSTimeout)
}
