// Package wiretest is a raw client of the enclave protocol for tests: one
// request and then its reply on a plain TCP connection, with no pool, retry
// or session bookkeeping, so that a test sees exactly what an enclave
// answers. A transport failure fails the test; an error reply is returned.
package wiretest

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// ReplyTimeout bounds the wait for one reply.
const ReplyTimeout = 20 * time.Second

// Client is one connection to an enclave.
type Client struct {
	t testing.TB
	// Conn is the connection, for tests that write or read raw bytes.
	Conn net.Conn
}

// Dial connects to the enclave at addr; the connection is closed at t's
// cleanup.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &Client{t: t, Conn: nc}
}

// Call sends req and decodes the reply into out (nil: the reply's value is
// not decoded). It returns the enclave's error reply, if any
// (enclavewire.DecodeReply); encoding, writing or reading the frame within
// ReplyTimeout must succeed or the test fails.
func (c *Client) Call(req *enclavewire.Request, out any) error {
	c.t.Helper()
	b, err := enclavewire.EncodeRequest(req)
	require.NoError(c.t, err)
	require.NoError(c.t, enclavewire.WriteFrame(c.Conn, b))
	require.NoError(c.t, c.Conn.SetReadDeadline(time.Now().Add(ReplyTimeout)))
	frame, err := enclavewire.ReadFrame(c.Conn, 0)
	require.NoError(c.t, err)
	return enclavewire.DecodeReply(frame, out)
}
