package rpctest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc"
)

// TestCall runs Call against a stub that answers its first request with Ok
// and its second with an error reply, checking the frames it sent.
func TestCall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	got := make(chan *rpc.Request, 2)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for _, reply := range []func() ([]byte, error){
			func() ([]byte, error) { return rpc.EncodeOk(nil) },
			func() ([]byte, error) { return rpc.EncodeErr(&rpc.RPCError{Message: "uninitialized"}) },
		} {
			frame, err := rpc.ReadFrame(c, 0)
			if err != nil {
				return
			}
			req, err := rpc.DecodeRequest(frame)
			if err != nil {
				return
			}
			got <- req
			b, _ := reply()
			if rpc.WriteFrame(c, b) != nil {
				return
			}
		}
	}()

	c := Dial(t, l.Addr().String())
	init := rpc.NewInitialize(rpc.Credentials{WIPProviderPath: "w", EncryptionKeyPath: "k"})
	require.NoError(t, c.Call(init, nil))
	require.Equal(t, init, <-got)
	gen := rpc.NewGenerate(rpc.KeyEd25519)
	require.EqualError(t, c.Call(gen, &rpc.GenerateResult{}), "uninitialized")
	require.Equal(t, gen, <-got)
}
