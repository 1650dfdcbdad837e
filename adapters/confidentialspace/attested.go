package confidentialspace

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/securechannel"
)

// attestedDialer dials addr over TCP (keep-alives, no Nagle) and runs the
// attested channel's handshake on it: the enclave's attestation token is
// verified inside the TLS handshake, before the daemon presents its own
// certificate or sends any application byte, and the enclave's admission of
// the daemon's key is confirmed by one AttestationToken exchange
// (securechannel.Conn.Admitted) before the connection is handed to the pool.
// A connection that was reached but refused — a token that fails a check
// (the error names the claim), a peer that is not an attested Sigil
// enclave, a daemon key the enclave does not admit — wraps
// enclaverpc.ErrRefused, so the pool backs off as after a refused
// Initialize; an unreachable enclave or a timeout does not.
func attestedDialer(cl *securechannel.Client, addr string) enclaverpc.Dialer {
	tcp := enclaverpc.TCPDialer(addr)
	return func(ctx context.Context) (net.Conn, error) {
		raw, err := tcp(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := cl.Handshake(ctx, raw)
		if err != nil {
			return nil, refusal(ctx, err)
		}
		if err := conn.Admitted(ctx); err != nil {
			return nil, refusal(ctx, err)
		}
		return conn, nil
	}
}

// refusal marks err as the enclave's refusal (enclaverpc.ErrRefused) unless
// it is a timeout or the end of ctx: the peer answered and the channel was
// not established.
func refusal(ctx context.Context, err error) error {
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || (errors.As(err, &ne) && ne.Timeout()) {
		return err
	}
	return refusedError{err}
}

// refusedError is a refused channel: its message is the cause's, and it
// is enclaverpc.ErrRefused for errors.Is.
type refusedError struct{ err error }

func (e refusedError) Error() string        { return e.err.Error() }
func (e refusedError) Unwrap() error        { return e.err }
func (e refusedError) Is(target error) bool { return target == enclaverpc.ErrRefused }

// refreshAttested is the pool's Config.Refresh on the attested channel:
// before each request and at each idle probe, the connection's token is
// refreshed in band when a quarter of its lifetime is left
// (securechannel.Conn.RefreshIfDue). A connection past its token's expiry
// is never used: it is reported broken (securechannel.ErrExpired), and the
// pool redials.
func refreshAttested(ctx context.Context, nc net.Conn) error {
	c, ok := nc.(*securechannel.Conn)
	if !ok {
		return errors.New("attested channel: not an attested connection")
	}
	if !time.Now().Before(c.ValidUntil()) {
		_ = c.Close()
		return securechannel.ErrExpired
	}
	return c.RefreshIfDue(ctx)
}
