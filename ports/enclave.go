package ports

import (
	"context"
	"errors"
	"time"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// SealedKey is a key as the enclave hands it out: its public key and the
// private key sealed (encrypted) so that only the enclave can open it.
type SealedKey struct {
	PublicKey tezos.PublicKey
	Blob      []byte
}

// Enclave is a trusted execution environment that holds private keys and
// signs with them. Keys are addressed by their public key hash once they have
// been loaded; how the enclave tracks them (handles, connections) is the
// adapter's business.
type Enclave interface {
	// Load opens a sealed blob inside the enclave so the key can sign, and
	// returns its public key.
	Load(ctx context.Context, blob []byte) (tezos.PublicKey, error)
	// Generate creates a key of type t inside the enclave, loads it and
	// returns it sealed.
	Generate(ctx context.Context, t tezos.KeyType) (SealedKey, error)
	// Import seals a plain private key inside the enclave and loads it. The
	// caller should zero sk afterwards.
	Import(ctx context.Context, sk tezos.PrivateKey) (SealedKey, error)
	// Sign signs msg with a loaded key. version is the BLS signing version.
	Sign(ctx context.Context, key tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error)
	// ProvePossession returns a BLS proof of possession for a loaded key.
	ProvePossession(ctx context.Context, key tezos.PublicKeyHash) (tezos.Signature, error)
	// Ready reports whether the enclave can serve requests now.
	Ready(ctx context.Context) error
}

// EnclavePoolStats is a snapshot of a pooled enclave client's health.
type EnclavePoolStats struct {
	Connections  int    // pool size
	Up           int    // connections up and initialized now
	Redials      uint64 // dials after a connection was lost or a dial failed, since start
	KeysLoaded   int    // keys the client holds and the enclave opens
	KeysUnopened int    // keys a (re)connected enclave could not open
}

// Causes of a failed enclave request (EnclaveRPCEvent.Failure).
const (
	EnclaveFailureError      = "enclave_error" // the enclave answered with an error
	EnclaveFailureConnection = "connection"    // no reply: the connection broke or could not be used
	EnclaveFailureTimeout    = "timeout"       // no reply in time
	EnclaveFailureMalformed  = "malformed"     // a reply that does not decode or holds the wrong thing
	// EnclaveFailureBadSignature: a signature that does not verify under
	// the key's public key for the message asked for.
	EnclaveFailureBadSignature = "bad_signature"
	// EnclaveFailureUnsolicited: bytes no request asked for were waiting
	// on a connection (a stale, duplicated or unsolicited reply); the
	// connection was replaced before the request was sent.
	EnclaveFailureUnsolicited = "unsolicited"
)

// ErrEnclaveBadSignature is in the chain of the error an enclave backend
// returns when the enclave answered a signing request with a signature
// that does not verify under the key's public key, for the message and
// the BLS signing version asked for. The signature is never returned, the
// request fails as unavailable, and the connection that carried it is
// dropped. Every remote enclave backend verifies before returning.
var ErrEnclaveBadSignature = errors.New("the enclave returned a signature that does not verify")

// EnclaveRPCEvent is one request to an enclave on the wire.
type EnclaveRPCEvent struct {
	Method   string // the protocol call: Sign, Import, Initialize, … (a fixed set)
	Duration time.Duration
	Failure  string // "" on success, else one of the EnclaveFailure* causes
}

// EnclaveRPCObserver receives the requests of an enclave client (metrics).
// It is called on the request path: implementations must be fast, must not
// block and should not allocate.
type EnclaveRPCObserver interface {
	ObserveEnclaveRPC(EnclaveRPCEvent)
}

// EnclavePool is implemented by enclave clients that keep a pool of
// connections (adapters/enclaverpc); the daemon exports their health.
type EnclavePool interface {
	PoolStats() EnclavePoolStats
	// SetRPCObserver installs the observer of every request (nil: none).
	SetRPCObserver(EnclaveRPCObserver)
}
