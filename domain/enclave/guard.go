package enclave

import (
	"context"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// SignRequest is a signature a session was asked for, as the Guard sees it
// before the signature leaves the enclave.
type SignRequest struct {
	// Key is the public key of the key asked to sign.
	Key tezos.PublicKey
	// Message is the message to sign (a Tezos sign request: its first
	// byte is the magic byte domain/request classifies by).
	Message []byte
	// Version is the BLS signing version (tezos.SignVersionLatest when the
	// request gave none).
	Version uint8
	// Channel is what carried the request.
	Channel Channel
	// WithBlob is set for SignWith (the key came with the request as a
	// sealed blob), unset for Sign (a handle of the session's chain).
	WithBlob bool
}

// Guard is the seat of the enclave's own signing rules (issue 21): a
// policy of what each key may sign and the high watermarks of consensus
// operations (domain/request classifies, domain/watermark decides), with
// state the host can neither forge nor roll back. Every signature of Sign
// and SignWith leaves a session through it: Sign either refuses (an
// *Error, sent to the client), or calls sign and returns its signature —
// after committing whatever must be durable before the signature leaves —
// or returns a signature it recorded (an identical retry). Proofs of
// possession sign no Tezos message and do not go through it.
type Guard interface {
	Sign(ctx context.Context, req SignRequest, sign func() (tezos.Signature, error)) (tezos.Signature, error)
}
