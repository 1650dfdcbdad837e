package enclaveserver

import (
	"context"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// SessionKMS seals and opens the key blobs of one session (one connection).
// A real KMS is bound to the credentials that session's Initialize brought,
// and its calls go over the network, hence the contexts. Implementations
// must not put plaintext or ciphertext into their errors; the server zeroes
// the plaintext it passes to Seal and the plaintext Open returns.
type SessionKMS interface {
	Seal(ctx context.Context, plain []byte) ([]byte, error)
	Open(ctx context.Context, blob []byte) ([]byte, error)
	// Close releases what the session held (connections, tokens). The
	// server calls it once, when the connection ends.
	Close() error
}

// KMSProvider gives a session its KMS when the session's Initialize
// arrives: a Cloud KMS client authenticated through the Workload Identity
// provider and bound to the key that Initialize names, for example. An
// error fails that Initialize (the session stays uninitialized and may try
// again); its text is sent to the client, so it must hold no secret.
type KMSProvider interface {
	ForSession(ctx context.Context, creds enclavewire.Credentials) (SessionKMS, error)
}

// KMSProviderFunc adapts a function to KMSProvider.
type KMSProviderFunc func(ctx context.Context, creds enclavewire.Credentials) (SessionKMS, error)

// ForSession calls f.
func (f KMSProviderFunc) ForSession(ctx context.Context, creds enclavewire.Credentials) (SessionKMS, error) {
	return f(ctx, creds)
}

// StaticKMS is the provider of the stand-ins: every session gets the same
// KMS, whatever its Initialize says.
type StaticKMS struct{ KMS KMS }

// ForSession returns the shared KMS.
func (s StaticKMS) ForSession(context.Context, enclavewire.Credentials) (SessionKMS, error) {
	return staticSession{s.KMS}, nil
}

type staticSession struct{ kms KMS }

func (s staticSession) Seal(_ context.Context, plain []byte) ([]byte, error) {
	return s.kms.Seal(plain)
}
func (s staticSession) Open(_ context.Context, blob []byte) ([]byte, error) { return s.kms.Open(blob) }
func (staticSession) Close() error                                          { return nil }

// sessionKMS asks the provider for the session's KMS, bounded by
// KMSTimeout and by the server's life.
func (c *session) sessionKMS(creds enclavewire.Credentials) (SessionKMS, *enclavewire.RPCError) {
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.KMSTimeout)
	defer cancel()
	kms, err := c.srv.opts.KMSProvider.ForSession(ctx, creds)
	if err != nil {
		return nil, enclavewire.NewError("encryption error", err.Error())
	}
	return kms, nil
}
