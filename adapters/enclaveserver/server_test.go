package enclaveserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// newEnclave returns the enclave's rules with kms (nil: the passthrough
// stand-in) and platform ("": Confidential Space), as sigil-enclave wires
// them.
func newEnclave(t testing.TB, kms enclaveside.KMSProvider, platform enclave.Platform) *enclave.Enclave {
	t.Helper()
	if kms == nil {
		kms = passthroughstandin.KMS{}
	}
	e, err := enclave.New(enclave.Config{Platform: platform, KMS: kms, Keys: enclavewire.KeyCodec{}})
	require.NoError(t, err)
	return e
}

// newServer is New, with the passthrough enclave unless opts names one.
func newServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Enclave == nil {
		opts.Enclave = newEnclave(t, nil, "")
	}
	s, err := New(opts)
	require.NoError(t, err)
	return s
}

func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := newServer(t, opts)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		require.ErrorIs(t, <-done, ErrServerClosed)
	})
	return s, l.Addr().String()
}

var creds = enclavewire.Credentials{WIPProviderPath: "projects/1/locations/global/workloadIdentityPools/p/providers/q", EncryptionKeyPath: "projects/p/locations/global/keyRings/r/cryptoKeys/k"}

func TestSessionLifecycle(t *testing.T) {
	_, addr := start(t, Options{})
	c := wiretest.Dial(t, addr)

	var gr enclavewire.GenerateResult
	require.EqualError(t, c.Call(enclavewire.NewGenerate(enclavewire.KeyEd25519), &gr), "uninitialized")
	require.EqualError(t, c.Call(enclavewire.NewInitialize(enclavewire.Credentials{}), nil), "encryption error: invalid credentials: wip_provider_path and encryption_key_path are required")
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
	require.EqualError(t, c.Call(enclavewire.NewInitialize(creds), nil), "already initialized")

	// Handles are per connection: a second connection starts empty.
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
	require.Equal(t, uint64(0), gi.Handle)
	c2 := wiretest.Dial(t, addr)
	require.NoError(t, c2.Call(enclavewire.NewInitialize(creds), nil))
	var tg enclavewire.Tagged
	err := c2.Call(enclavewire.NewSign(0, []byte("x"), 2), &tg)
	require.EqualError(t, err, "signer error: invalid handle")
}

func TestEveryRPC(t *testing.T) {
	for _, kms := range []string{"passthrough", "local"} {
		t.Run(kms, func(t *testing.T) {
			opts := Options{}
			if kms == "local" {
				k, err := localstandin.New(filepath.Join(t.TempDir(), "kms.key"))
				require.NoError(t, err)
				opts.Enclave = newEnclave(t, k, "")
			}
			_, addr := start(t, opts)
			c := wiretest.Dial(t, addr)
			require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
			msg := []byte("\x03some operation bytes")
			handle := uint64(0)

			for _, kt := range tezos.KeyTypes {
				rkt, err := enclavewire.KeyTypeFor(kt)
				require.NoError(t, err)

				// Generate: sealed but not loaded.
				var gr enclavewire.GenerateResult
				require.NoError(t, c.Call(enclavewire.NewGenerate(rkt), &gr))
				pk, err := gr.PublicKey.PublicKeyOf(kt)
				require.NoError(t, err)

				// PublicKeyFrom the blob.
				var pf enclavewire.Tagged
				require.NoError(t, c.Call(enclavewire.NewPublicKeyFrom(gr.EncryptedPrivateKey), &pf))
				pk2, err := pf.PublicKeyOf(kt)
				require.NoError(t, err)
				require.True(t, pk.Equal(pk2))

				// SignWith, with and without version.
				var sw enclavewire.Tagged
				require.NoError(t, c.Call(enclavewire.NewSignWith(gr.EncryptedPrivateKey, msg, 2), &sw))
				sig, err := sw.Signature(kt)
				require.NoError(t, err)
				require.NoError(t, pk.Verify(msg, sig, 2))
				noVersion := &enclavewire.Request{SignWith: &enclavewire.SignWithRequest{EncryptedPrivateKey: gr.EncryptedPrivateKey, Message: msg}}
				require.NoError(t, c.Call(noVersion, &sw))
				sig, err = sw.Signature(kt)
				require.NoError(t, err)
				require.NoError(t, pk.Verify(msg, sig, tezos.SignVersionLatest))

				// Import the blob, then Sign and PublicKey by handle.
				var ir enclavewire.ImportResult
				require.NoError(t, c.Call(enclavewire.NewImport(gr.EncryptedPrivateKey), &ir))
				require.Equal(t, handle, ir.Handle)
				handle++
				var st enclavewire.Tagged
				require.NoError(t, c.Call(enclavewire.NewSign(ir.Handle, msg, 2), &st))
				sig, err = st.Signature(kt)
				require.NoError(t, err)
				require.NoError(t, pk.Verify(msg, sig, 2))
				var pt enclavewire.Tagged
				require.NoError(t, c.Call(enclavewire.NewPublicKey(ir.Handle), &pt))
				pk3, err := pt.PublicKeyOf(kt)
				require.NoError(t, err)
				require.True(t, pk.Equal(pk3))

				// GenerateAndImport.
				var gi enclavewire.GenerateAndImportResult
				require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(rkt), &gi))
				require.Equal(t, handle, gi.Handle)
				handle++

				// ImportUnencrypted a known key: same public key, usable blob.
				sk, err := tezos.GeneratePrivateKey(kt, nil)
				require.NoError(t, err)
				wantPK, err := sk.Public()
				require.NoError(t, err)
				w, err := enclavewire.NewPrivateKey(sk)
				require.NoError(t, err)
				var iu enclavewire.GenerateAndImportResult
				require.NoError(t, c.Call(enclavewire.NewImportUnencrypted(w), &iu))
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
				var pp enclavewire.Tagged
				err = c.Call(enclavewire.NewProvePossession(iu.Handle), &pp)
				if kt == tezos.BLS {
					require.NoError(t, err)
					proof, err := pp.Signature(tezos.BLS)
					require.NoError(t, err)
					require.NoError(t, wantPK.VerifyPossession(proof))
					// BLS versions: 0 refused, 1, 2, 255 verify.
					for _, v := range []uint8{1, 2, 255} {
						require.NoError(t, c.Call(enclavewire.NewSign(iu.Handle, msg, v), &st))
						sig, err := st.Signature(tezos.BLS)
						require.NoError(t, err)
						require.NoError(t, wantPK.Verify(msg, sig, v), "version %d", v)
					}
					require.EqualError(t, c.Call(enclavewire.NewSign(iu.Handle, msg, 0), &st), "signer error: invalid signing version")
				} else {
					require.EqualError(t, err, "signer error: Proof of possession is not supported")
				}
			}

			require.EqualError(t, c.Call(enclavewire.NewPublicKey(999), &enclavewire.Tagged{}), "signer error: invalid handle")
			var ir enclavewire.ImportResult
			err := c.Call(enclavewire.NewImport([]byte{1, 2, 3}), &ir)
			var re *enclavewire.RPCError
			require.ErrorAs(t, err, &re)
		})
	}
}

func TestTamperedBlobOverRPC(t *testing.T) {
	k, err := localstandin.New(filepath.Join(t.TempDir(), "kms.key"))
	require.NoError(t, err)
	_, addr := start(t, Options{Enclave: newEnclave(t, k, "")})
	c := wiretest.Dial(t, addr)
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
	var gr enclavewire.GenerateResult
	require.NoError(t, c.Call(enclavewire.NewGenerate(enclavewire.KeyBLS), &gr))
	gr.EncryptedPrivateKey[len(gr.EncryptedPrivateKey)-1] ^= 0x80
	var ir enclavewire.ImportResult
	err = c.Call(enclavewire.NewImport(gr.EncryptedPrivateKey), &ir)
	require.EqualError(t, err, "encryption error: "+localstandin.ErrOpen.Error())
	// The connection still works.
	require.NoError(t, c.Call(enclavewire.NewGenerate(enclavewire.KeyBLS), &gr))
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	_, addr := start(t, Options{MaxFrame: 1024})
	c := wiretest.Dial(t, addr)
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
	c := wiretest.Dial(t, addr)
	require.NoError(t, enclavewire.WriteFrame(c.Conn, []byte{0xff, 0x00, 0x13}))
	frame, err := enclavewire.ReadFrame(c.Conn, 0)
	require.NoError(t, err)
	err = enclavewire.DecodeReply(frame, nil)
	var re *enclavewire.RPCError
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
			c := wiretest.Dial(t, addr)
			_ = c.Call(enclavewire.NewInitialize(creds), nil)
		}()
	}
	wg.Wait()
	el := time.Since(begin)
	require.GreaterOrEqual(t, el, 300*time.Millisecond)
	require.Less(t, el, 300*time.Millisecond*n-100*time.Millisecond, "delays were serialized")
}

func TestSessionsAndClose(t *testing.T) {
	s, addr := start(t, Options{})
	c := wiretest.Dial(t, addr)
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeySecp256k1), &gi))
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
