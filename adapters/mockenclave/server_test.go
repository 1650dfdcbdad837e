package mockenclave

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc"
	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc/rpctest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := NewServer(opts)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		require.ErrorIs(t, <-done, ErrServerClosed)
	})
	return s, l.Addr().String()
}

var creds = rpc.Credentials{WIPProviderPath: "projects/1/locations/global/workloadIdentityPools/p/providers/q", EncryptionKeyPath: "projects/p/locations/global/keyRings/r/cryptoKeys/k"}

func TestSessionLifecycle(t *testing.T) {
	_, addr := start(t, Options{})
	c := rpctest.Dial(t, addr)

	var gr rpc.GenerateResult
	require.EqualError(t, c.Call(rpc.NewGenerate(rpc.KeyEd25519), &gr), "uninitialized")
	require.EqualError(t, c.Call(rpc.NewInitialize(rpc.Credentials{}), nil), "encryption error: invalid credentials: wip_provider_path and encryption_key_path are required")
	require.NoError(t, c.Call(rpc.NewInitialize(creds), nil))
	require.EqualError(t, c.Call(rpc.NewInitialize(creds), nil), "already initialized")

	// Handles are per connection: a second connection starts empty.
	var gi rpc.GenerateAndImportResult
	require.NoError(t, c.Call(rpc.NewGenerateAndImport(rpc.KeyEd25519), &gi))
	require.Equal(t, uint64(0), gi.Handle)
	c2 := rpctest.Dial(t, addr)
	require.NoError(t, c2.Call(rpc.NewInitialize(creds), nil))
	var tg rpc.Tagged
	err := c2.Call(rpc.NewSign(0, []byte("x"), 2), &tg)
	require.EqualError(t, err, "signer error: invalid handle")
}

func TestEveryRPC(t *testing.T) {
	for _, kms := range []string{"passthrough", "local"} {
		t.Run(kms, func(t *testing.T) {
			opts := Options{}
			if kms == "local" {
				k, err := NewLocalKMS(filepath.Join(t.TempDir(), "kms.key"))
				require.NoError(t, err)
				opts.KMS = k
			}
			_, addr := start(t, opts)
			c := rpctest.Dial(t, addr)
			require.NoError(t, c.Call(rpc.NewInitialize(creds), nil))
			msg := []byte("\x03some operation bytes")
			handle := uint64(0)

			for _, kt := range tezos.KeyTypes {
				rkt, err := rpc.KeyTypeFor(kt)
				require.NoError(t, err)

				// Generate: sealed but not loaded.
				var gr rpc.GenerateResult
				require.NoError(t, c.Call(rpc.NewGenerate(rkt), &gr))
				pk, err := gr.PublicKey.PublicKeyOf(kt)
				require.NoError(t, err)

				// PublicKeyFrom the blob.
				var pf rpc.Tagged
				require.NoError(t, c.Call(rpc.NewPublicKeyFrom(gr.EncryptedPrivateKey), &pf))
				pk2, err := pf.PublicKeyOf(kt)
				require.NoError(t, err)
				require.True(t, pk.Equal(pk2))

				// SignWith, with and without version.
				var sw rpc.Tagged
				require.NoError(t, c.Call(rpc.NewSignWith(gr.EncryptedPrivateKey, msg, 2), &sw))
				sig, err := sw.Signature(kt)
				require.NoError(t, err)
				require.NoError(t, pk.Verify(msg, sig, 2))
				noVersion := &rpc.Request{SignWith: &rpc.SignWithRequest{EncryptedPrivateKey: gr.EncryptedPrivateKey, Message: msg}}
				require.NoError(t, c.Call(noVersion, &sw))
				sig, err = sw.Signature(kt)
				require.NoError(t, err)
				require.NoError(t, pk.Verify(msg, sig, tezos.SignVersionLatest))

				// Import the blob, then Sign and PublicKey by handle.
				var ir rpc.ImportResult
				require.NoError(t, c.Call(rpc.NewImport(gr.EncryptedPrivateKey), &ir))
				require.Equal(t, handle, ir.Handle)
				handle++
				var st rpc.Tagged
				require.NoError(t, c.Call(rpc.NewSign(ir.Handle, msg, 2), &st))
				sig, err = st.Signature(kt)
				require.NoError(t, err)
				require.NoError(t, pk.Verify(msg, sig, 2))
				var pt rpc.Tagged
				require.NoError(t, c.Call(rpc.NewPublicKey(ir.Handle), &pt))
				pk3, err := pt.PublicKeyOf(kt)
				require.NoError(t, err)
				require.True(t, pk.Equal(pk3))

				// GenerateAndImport.
				var gi rpc.GenerateAndImportResult
				require.NoError(t, c.Call(rpc.NewGenerateAndImport(rkt), &gi))
				require.Equal(t, handle, gi.Handle)
				handle++

				// ImportUnencrypted a known key: same public key, usable blob.
				sk, err := tezos.GeneratePrivateKey(kt, nil)
				require.NoError(t, err)
				wantPK, err := sk.Public()
				require.NoError(t, err)
				w, err := rpc.NewPrivateKey(sk)
				require.NoError(t, err)
				var iu rpc.GenerateAndImportResult
				require.NoError(t, c.Call(rpc.NewImportUnencrypted(w), &iu))
				w.Zero()
				require.Equal(t, handle, iu.Handle)
				handle++
				gotPK, err := iu.PublicKey.PublicKeyOf(kt)
				require.NoError(t, err)
				require.True(t, wantPK.Equal(gotPK))
				if kms == "local" {
					require.False(t, bytes.Contains(iu.EncryptedPrivateKey, sk.Bytes), "local KMS blob holds the plain key")
				}

				// ProvePossession: BLS only.
				var pp rpc.Tagged
				err = c.Call(rpc.NewProvePossession(iu.Handle), &pp)
				if kt == tezos.BLS {
					require.NoError(t, err)
					proof, err := pp.Signature(tezos.BLS)
					require.NoError(t, err)
					require.NoError(t, wantPK.VerifyPossession(proof))
					// BLS versions: 0 refused, 1, 2, 255 verify.
					for _, v := range []uint8{1, 2, 255} {
						require.NoError(t, c.Call(rpc.NewSign(iu.Handle, msg, v), &st))
						sig, err := st.Signature(tezos.BLS)
						require.NoError(t, err)
						require.NoError(t, wantPK.Verify(msg, sig, v), "version %d", v)
					}
					require.EqualError(t, c.Call(rpc.NewSign(iu.Handle, msg, 0), &st), "signer error: invalid signing version")
				} else {
					require.EqualError(t, err, "signer error: Proof of possession is not supported")
				}
			}

			require.EqualError(t, c.Call(rpc.NewPublicKey(999), &rpc.Tagged{}), "signer error: invalid handle")
			var ir rpc.ImportResult
			err := c.Call(rpc.NewImport([]byte{1, 2, 3}), &ir)
			var re *rpc.RPCError
			require.ErrorAs(t, err, &re)
		})
	}
}

func TestLocalKMS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.key")
	k1, err := NewLocalKMS(path)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	blob, err := k1.Seal([]byte("secret"))
	require.NoError(t, err)
	require.False(t, bytes.Contains(blob, []byte("secret")))

	// Same file, same key: a restarted enclave opens old blobs.
	k2, err := NewLocalKMS(path)
	require.NoError(t, err)
	plain, err := k2.Open(blob)
	require.NoError(t, err)
	require.Equal(t, []byte("secret"), plain)

	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 1
		_, err := k2.Open(bad)
		require.ErrorIs(t, err, ErrOpen)
	}
	_, err = k2.Open(blob[:5])
	require.ErrorIs(t, err, ErrOpen)

	other, err := NewLocalKMS(filepath.Join(t.TempDir(), "other.key"))
	require.NoError(t, err)
	_, err = other.Open(blob)
	require.ErrorIs(t, err, ErrOpen)

	short := filepath.Join(t.TempDir(), "short.key")
	require.NoError(t, os.WriteFile(short, []byte("short"), 0o600))
	_, err = NewLocalKMS(short)
	require.ErrorContains(t, err, "5 bytes, want 32")
}

func TestTamperedBlobOverRPC(t *testing.T) {
	k, err := NewLocalKMS(filepath.Join(t.TempDir(), "kms.key"))
	require.NoError(t, err)
	_, addr := start(t, Options{KMS: k})
	c := rpctest.Dial(t, addr)
	require.NoError(t, c.Call(rpc.NewInitialize(creds), nil))
	var gr rpc.GenerateResult
	require.NoError(t, c.Call(rpc.NewGenerate(rpc.KeyBLS), &gr))
	gr.EncryptedPrivateKey[len(gr.EncryptedPrivateKey)-1] ^= 0x80
	var ir rpc.ImportResult
	err = c.Call(rpc.NewImport(gr.EncryptedPrivateKey), &ir)
	require.EqualError(t, err, "encryption error: "+ErrOpen.Error())
	// The connection still works.
	require.NoError(t, c.Call(rpc.NewGenerate(rpc.KeyBLS), &gr))
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	_, addr := start(t, Options{MaxFrame: 1024})
	c := rpctest.Dial(t, addr)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 0xfffffff0)
	_, err := c.Conn.Write(hdr[:])
	require.NoError(t, err)
	require.NoError(t, c.Conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Conn.Read(make([]byte, 1))
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "got %v", err)
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

func TestGarbageRequestGetsError(t *testing.T) {
	_, addr := start(t, Options{})
	c := rpctest.Dial(t, addr)
	require.NoError(t, rpc.WriteFrame(c.Conn, []byte{0xff, 0x00, 0x13}))
	frame, err := rpc.ReadFrame(c.Conn, 0)
	require.NoError(t, err)
	err = rpc.DecodeReply(frame, nil)
	var re *rpc.RPCError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "deserialization error", re.Message)
}

func TestReplyDelayDoesNotBlockOthers(t *testing.T) {
	_, addr := start(t, Options{ReplyDelay: 300 * time.Millisecond})
	const n = 4
	var wg sync.WaitGroup
	begin := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rpctest.Dial(t, addr)
			_ = c.Call(rpc.NewInitialize(creds), nil)
		}()
	}
	wg.Wait()
	el := time.Since(begin)
	require.GreaterOrEqual(t, el, 300*time.Millisecond)
	require.Less(t, el, 300*time.Millisecond*n-100*time.Millisecond, "delays were serialized")
}

func TestSessionsAndClose(t *testing.T) {
	s, addr := start(t, Options{})
	c := rpctest.Dial(t, addr)
	require.NoError(t, c.Call(rpc.NewInitialize(creds), nil))
	var gi rpc.GenerateAndImportResult
	require.NoError(t, c.Call(rpc.NewGenerateAndImport(rpc.KeySecp256k1), &gi))
	pk, err := gi.PublicKey.PublicKeyOf(tezos.Secp256k1)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ss := s.Sessions()
		return len(ss) == 1 && ss[0].Initialized && len(ss[0].Keys) == 1 && ss[0].Keys[0] == pk.Hash()
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, s.Close())
	require.NoError(t, c.Conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Conn.Read(make([]byte, 1))
	require.Error(t, err)
}
