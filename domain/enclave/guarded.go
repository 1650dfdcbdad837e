package enclave

import (
	"context"

	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// NewGuard seats the enclave's guard (domain/guard) in the enclave: every
// signature of Sign and SignWith goes through g.Sign, which classifies the
// message, applies the policy, and for consensus requests commits the mark
// before the signature is returned. A refusal becomes the enclave's Err
// reply in the guard's wire form (guard.WireMessage): its outermost message
// is "guard refused: KIND" (forbidden, conflict, unavailable, invalid),
// which the daemon maps back to its error kind and HTTP status
// (guard.FromWire), and its source is the refusal's text. Errors of the
// signing itself (an *Error such as ErrSigningVersion) pass unchanged.
func NewGuard(g *guard.Guard) Guard { return guardSeat{g: g} }

type guardSeat struct{ g *guard.Guard }

func (s guardSeat) Sign(ctx context.Context, req SignRequest, sign func() (tezos.Signature, error)) (tezos.Signature, error) {
	res, err := s.g.Sign(ctx, guard.Request{Key: req.Key, Message: req.Message, Version: req.Version}, sign)
	if err != nil {
		if msg, detail, ok := guard.WireMessage(err); ok {
			return tezos.Signature{}, NewError(msg, detail)
		}
		return tezos.Signature{}, err
	}
	return res.Signature, nil
}
