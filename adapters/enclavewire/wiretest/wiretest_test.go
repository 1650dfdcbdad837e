package wiretest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// TestCall runs Call against a stub that answers its first request with Ok
// and its second with an error reply, checking the frames it sent.
func TestCall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	got := make(chan *enclavewire.Request, 2)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for _, reply := range []func() ([]byte, error){
			func() ([]byte, error) { return enclavewire.EncodeOk(nil) },
			func() ([]byte, error) { return enclavewire.EncodeErr(&enclavewire.RPCError{Message: "uninitialized"}) },
		} {
			frame, err := enclavewire.ReadFrame(c, 0)
			if err != nil {
				return
			}
			req, err := enclavewire.DecodeRequest(frame)
			if err != nil {
				return
			}
			got <- req
			b, _ := reply()
			if enclavewire.WriteFrame(c, b) != nil {
				return
			}
		}
	}()

	c := Dial(t, l.Addr().String())
	init := enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "w", EncryptionKeyPath: "k"})
	require.NoError(t, c.Call(init, nil))
	require.Equal(t, init, <-got)
	gen := enclavewire.NewGenerate(enclavewire.KeyEd25519)
	require.EqualError(t, c.Call(gen, &enclavewire.GenerateResult{}), "uninitialized")
	require.Equal(t, gen, <-got)
}
