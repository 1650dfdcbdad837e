package nitro

import (
	"context"
	"net"

	"github.com/mdlayher/vsock"

	"github.com/sigil-signer/sigil/adapters/enclaverpc"
)

// The vsock transport: the few lines that are not exercised by the tests
// (these machines have no vsock, not even the loopback context id), kept
// to calls of github.com/mdlayher/vsock. Reviewed against Signatory's use of
// the same socket type: the host dials the enclave's context id and port,
// and listens on a port of any context id for the enclave's outbound proxy
// connections.

// vsockDialer dials the enclave over vsock.
func vsockDialer(cid, port uint32) enclaverpc.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		return vsock.DialContext(ctx, cid, port, nil)
	}
}

// vsockListen listens on a vsock port of the host for the enclave's
// connections to the KMS proxy.
func vsockListen(port uint32) (net.Listener, error) {
	return vsock.Listen(port, nil)
}
