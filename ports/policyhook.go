package ports

import (
	"context"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// HookRequest is what an external policy service is told about a sign
// request that the key's own policy already allows.
type HookRequest struct {
	// Message is the raw request to sign (magic byte included).
	Message []byte
	// Source is the client's IP address as the listener saw it; empty when
	// unknown.
	Source string
	// PKH is the key asked to sign.
	PKH tezos.PublicKeyHash
	// ClientKeyHash is the authorized client key that authenticated the
	// request; zero when the request was not authenticated by a key.
	ClientKeyHash tezos.PublicKeyHash
}

// PolicyHook is an external policy service consulted before a request is
// signed (Signatory's policy_hook). Approve returns nil only when the
// service approved this very request; a refusal is a domain.KindForbidden
// error, and a service that cannot be reached, answers too late or answers
// something unreadable is an error too: never an approval.
type PolicyHook interface {
	Approve(ctx context.Context, req HookRequest) error
}
