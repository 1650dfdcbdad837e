// Package enclavewire is the wire protocol of the enclave signer, shared by
// its clients (adapters/enclaverpc, for Confidential Space and AWS Nitro)
// and its server (Sigil's enclave): the protocol of ECAD Labs'
// enclave-signer (tee-signer), whose two platforms differ only in the
// Initialize payload (Credentials, AWSCredentials). It holds the request and
// reply types, their CBOR encoding (byte-identical to Signatory's Go client,
// decodable by the Rust enclave's serde/ciborium types), the 4-byte
// big-endian length framing, and conversions to and from the domain/tezos
// key types.
//
// A request is a CBOR map with exactly one entry naming the call (serde's
// externally tagged enum); a reply is {"Ok": value} or
// {"Err": {"message": text, "source": Err-or-null}}.
package enclavewire

import (
	"errors"
	"fmt"
	"strings"
)

// KeyType is the enclave's name for a key algorithm.
type KeyType string

// The enclave's key type names.
const (
	KeySecp256k1 KeyType = "Secp256k1"
	KeyNistP256  KeyType = "NistP256"
	KeyEd25519   KeyType = "Ed25519"
	KeyBLS       KeyType = "Bls"
)

// Valid reports whether t is one of the four names the enclave knows.
func (t KeyType) Valid() bool {
	switch t {
	case KeySecp256k1, KeyNistP256, KeyEd25519, KeyBLS:
		return true
	}
	return false
}

// Credentials is the Confidential Space Initialize payload.
type Credentials struct {
	WIPProviderPath   string `cbor:"wip_provider_path"`
	EncryptionKeyPath string `cbor:"encryption_key_path"`
}

// GoString hides nothing secret but keeps %#v output short and stable.
func (c Credentials) GoString() string {
	return fmt.Sprintf("enclavewire.Credentials{WIPProviderPath:%q, EncryptionKeyPath:%q}", c.WIPProviderPath, c.EncryptionKeyPath)
}

// AWSCredentials is the AWS Nitro Initialize payload: the credentials the
// enclave uses to call AWS KMS, the KMS key and its region. Field order,
// names and the omitted-when-absent session token follow the enclave
// signer's Nitro client, so that the encoding is byte-identical. String and
// GoString never show the secrets.
type AWSCredentials struct {
	AccessKeyID     string  `cbor:"access_key_id"`
	SecretAccessKey string  `cbor:"secret_access_key"`
	SessionToken    *string `cbor:"session_token,omitempty"`
	EncryptionKeyID string  `cbor:"encryption_key_id"`
	Region          string  `cbor:"region"`
}

// String implements fmt.Stringer without revealing the secrets.
func (c AWSCredentials) String() string {
	return fmt.Sprintf("enclavewire.AWSCredentials{AccessKeyID:%q, SecretAccessKey:(redacted), SessionToken:%s, EncryptionKeyID:%q, Region:%q}",
		c.AccessKeyID, map[bool]string{true: "(redacted)", false: "(none)"}[c.SessionToken != nil], c.EncryptionKeyID, c.Region)
}

// GoString implements fmt.GoStringer without revealing the secrets.
func (c AWSCredentials) GoString() string { return c.String() }

// SignRequest is the Sign payload. Version is a pointer only so that a
// server can tell an absent version (older clients) from version 0; every
// request Sigil builds carries it.
type SignRequest struct {
	Handle  uint64 `cbor:"handle"`
	Message []byte `cbor:"message"`
	Version *uint8 `cbor:"version,omitempty"`
}

// SignWithRequest is the SignWith payload. Signatory's Go client omits
// version here, while the Rust enclave requires it; Sigil always sends it.
type SignWithRequest struct {
	EncryptedPrivateKey []byte `cbor:"encrypted_private_key"`
	Message             []byte `cbor:"message"`
	Version             *uint8 `cbor:"version,omitempty"`
}

// PrivateKey is a plain private key as ImportUnencrypted carries it: a map
// with exactly one of the four entries set. Its String and GoString never
// show the secret.
type PrivateKey struct {
	Secp256k1 []byte `cbor:"Secp256k1,omitempty"`
	NistP256  []byte `cbor:"NistP256,omitempty"`
	Ed25519   []byte `cbor:"Ed25519,omitempty"`
	Bls       []byte `cbor:"Bls,omitempty"`
}

// String implements fmt.Stringer without revealing the secret.
func (*PrivateKey) String() string { return "enclavewire.PrivateKey(redacted)" }

// GoString implements fmt.GoStringer without revealing the secret.
func (p *PrivateKey) GoString() string { return p.String() }

// Zero overwrites the secret bytes.
func (p *PrivateKey) Zero() {
	if p == nil {
		return
	}
	clear(p.Secp256k1)
	clear(p.NistP256)
	clear(p.Ed25519)
	clear(p.Bls)
}

// Request is one RPC call; exactly one field is set. Field order, names,
// omitempty and types match Signatory's Go client so that the encoding is
// byte-identical.
type Request struct {
	Initialize *Credentials `cbor:"Initialize,omitempty"`
	// InitializeAWS is the Nitro form of Initialize (sent under the same
	// "Initialize" name; at most one of the two is set).
	InitializeAWS     *AWSCredentials  `cbor:"-"`
	Import            []byte           `cbor:"Import,omitempty"`
	ImportUnencrypted *PrivateKey      `cbor:"ImportUnencrypted,omitempty"`
	Generate          *KeyType         `cbor:"Generate,omitempty"`
	GenerateAndImport *KeyType         `cbor:"GenerateAndImport,omitempty"`
	Sign              *SignRequest     `cbor:"Sign,omitempty"`
	SignWith          *SignWithRequest `cbor:"SignWith,omitempty"`
	PublicKey         *uint64          `cbor:"PublicKey,omitempty"`
	PublicKeyFrom     []byte           `cbor:"PublicKeyFrom,omitempty"`
	ProvePossession   *uint64          `cbor:"ProvePossession,omitempty"`
	// AttestationToken is Sigil's request of the attested channel (not
	// enclave-signer's): the enclave's current attestation token.
	AttestationToken *AttestationTokenArgs `cbor:"AttestationToken,omitempty"`
}

// AttestationTokenArgs are the AttestationToken request's arguments: none
// yet; the empty map leaves room for optional fields.
type AttestationTokenArgs struct{}

// Method returns the name of the call the request carries ("" if none).
func (r *Request) Method() string {
	switch {
	case r == nil:
		return ""
	case r.Initialize != nil, r.InitializeAWS != nil:
		return "Initialize"
	case r.Import != nil:
		return "Import"
	case r.ImportUnencrypted != nil:
		return "ImportUnencrypted"
	case r.Generate != nil:
		return "Generate"
	case r.GenerateAndImport != nil:
		return "GenerateAndImport"
	case r.Sign != nil:
		return "Sign"
	case r.SignWith != nil:
		return "SignWith"
	case r.PublicKey != nil:
		return "PublicKey"
	case r.PublicKeyFrom != nil:
		return "PublicKeyFrom"
	case r.ProvePossession != nil:
		return "ProvePossession"
	case r.AttestationToken != nil:
		return MethodAttestationToken
	}
	return ""
}

// Constructors for every call. They copy nothing: the caller keeps
// ownership of the byte slices.

// NewInitialize builds an Initialize request.
func NewInitialize(c Credentials) *Request { return &Request{Initialize: &c} }

// NewInitializeAWS builds a Nitro Initialize request.
func NewInitializeAWS(c AWSCredentials) *Request { return &Request{InitializeAWS: &c} }

// NewImport builds an Import request for a sealed blob.
func NewImport(blob []byte) *Request { return &Request{Import: blob} }

// NewImportUnencrypted builds an ImportUnencrypted request.
func NewImportUnencrypted(sk *PrivateKey) *Request { return &Request{ImportUnencrypted: sk} }

// NewGenerate builds a Generate request.
func NewGenerate(t KeyType) *Request { return &Request{Generate: &t} }

// NewGenerateAndImport builds a GenerateAndImport request.
func NewGenerateAndImport(t KeyType) *Request { return &Request{GenerateAndImport: &t} }

// NewSign builds a Sign request.
func NewSign(handle uint64, msg []byte, version uint8) *Request {
	return &Request{Sign: &SignRequest{Handle: handle, Message: msg, Version: &version}}
}

// NewSignWith builds a SignWith request; version is always sent.
func NewSignWith(blob, msg []byte, version uint8) *Request {
	return &Request{SignWith: &SignWithRequest{EncryptedPrivateKey: blob, Message: msg, Version: &version}}
}

// NewPublicKey builds a PublicKey request.
func NewPublicKey(handle uint64) *Request { return &Request{PublicKey: &handle} }

// NewPublicKeyFrom builds a PublicKeyFrom request.
func NewPublicKeyFrom(blob []byte) *Request { return &Request{PublicKeyFrom: blob} }

// NewProvePossession builds a ProvePossession request.
func NewProvePossession(handle uint64) *Request { return &Request{ProvePossession: &handle} }

// NewAttestationToken builds an AttestationToken request.
func NewAttestationToken() *Request { return &Request{AttestationToken: &AttestationTokenArgs{}} }

// Tagged is a one-entry map from a key type name to bytes: the wire form of
// PublicKey, PrivateKey, Signature and ProofOfPossession values in replies.
type Tagged struct {
	Type  KeyType
	Bytes []byte
}

// ImportResult is the Ok value of Import.
type ImportResult struct {
	PublicKey Tagged
	Handle    uint64
}

// GenerateResult is the Ok value of Generate.
type GenerateResult struct {
	EncryptedPrivateKey []byte
	PublicKey           Tagged
}

// GenerateAndImportResult is the Ok value of GenerateAndImport and
// ImportUnencrypted.
type GenerateAndImportResult struct {
	EncryptedPrivateKey []byte
	PublicKey           Tagged
	Handle              uint64
}

// RPCError is an enclave error reply. Errors nest through Source.
type RPCError struct {
	Message string    `cbor:"message"`
	Source  *RPCError `cbor:"source"`
}

// Error renders the chain as "message: source message: …", as the Rust
// enclave's Display does.
func (e *RPCError) Error() string {
	var b strings.Builder
	for i, cur := 0, e; cur != nil; i, cur = i+1, cur.Source {
		if i > 0 {
			b.WriteString(": ")
		}
		b.WriteString(cur.Message)
	}
	return b.String()
}

// Unwrap returns the source error, if any.
func (e *RPCError) Unwrap() error {
	if e.Source == nil {
		return nil
	}
	return e.Source
}

// NewError builds an error chain from messages, outermost first.
func NewError(msgs ...string) *RPCError {
	var e *RPCError
	for i := len(msgs) - 1; i >= 0; i-- {
		e = &RPCError{Message: msgs[i], Source: e}
	}
	return e
}

// ErrMalformed is wrapped by every decoding error: the peer sent bytes that
// are not a valid message.
var ErrMalformed = errors.New("malformed enclave message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
