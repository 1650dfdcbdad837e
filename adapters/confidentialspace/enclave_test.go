package confidentialspace

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// startEnclave runs a mock enclave on addr ("127.0.0.1:0" for a free port).
func startEnclave(t testing.TB, addr string, opts enclavetest.ServerOptions) (*enclaveserver.Server, string) {
	t.Helper()
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a just-closed server may need a moment
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	s := enclavetest.NewServer(t, opts)
	go func() { _ = s.Serve(l) }()
	return s, l.Addr().String()
}

func newClient(t testing.TB, addr string, conns int, mod ...func(*Config)) *Enclave {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	cfg := Config{Host: host, Port: port, WIPProviderPath: "wip", EncryptionKeyPath: "key", Connections: conns}
	for _, m := range mod {
		m(&cfg)
	}
	var log *slog.Logger
	if os.Getenv("ENCLAVE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := New(cfg, log)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Host: "h", WIPProviderPath: "w", EncryptionKeyPath: "k"}
	for field, mod := range map[string]func(*Config){
		"host":                func(c *Config) { c.Host = "" },
		"wip_provider_path":   func(c *Config) { c.WIPProviderPath = " " },
		"encryption_key_path": func(c *Config) { c.EncryptionKeyPath = "" },
		"port":                func(c *Config) { c.Port = "http" },
		"connections":         func(c *Config) { c.Connections = 100000 },
	} {
		c := ok
		mod(&c)
		_, err := New(c, nil)
		require.ErrorContains(t, err, field)
		require.Equal(t, domain.KindInvalid, domain.KindOf(err))
	}
	c := ok
	require.NoError(t, c.normalize())
	require.Equal(t, "2000", c.Port)
	require.Equal(t, DefaultConnections, c.Connections)
	require.Equal(t, DefaultDialTimeout, c.DialTimeout)
	require.Equal(t, DefaultRPCTimeout, c.RPCTimeout)
	require.Equal(t, enclavewire.DefaultMaxFrame, c.MaxReplyBytes)
}

func TestOperations(t *testing.T) {
	kms, err := localstandin.New(filepath.Join(t.TempDir(), "kms.key"))
	require.NoError(t, err)
	_, addr := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{KMS: kms})
	e := newClient(t, addr, 3)
	ctx := ctxT(t, 30*time.Second)
	msg := []byte("\x03operation")

	for _, kt := range tezos.KeyTypes {
		t.Run(kt.String(), func(t *testing.T) {
			// Generate, then sign.
			sealed, err := e.Generate(ctx, kt)
			require.NoError(t, err)
			require.Equal(t, kt, sealed.PublicKey.Type)
			require.NotEmpty(t, sealed.Blob)
			pkh := sealed.PublicKey.Hash()
			versions := []uint8{0}
			if kt == tezos.BLS {
				versions = []uint8{1, 2, 255}
			}
			for _, v := range versions {
				sig, err := e.Sign(ctx, pkh, msg, v)
				require.NoError(t, err)
				require.NoError(t, sealed.PublicKey.Verify(msg, sig, v))
			}

			// Import a plain key.
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			require.NoError(t, err)
			want, err := sk.Public()
			require.NoError(t, err)
			imp, err := e.Import(ctx, sk)
			require.NoError(t, err)
			require.True(t, want.Equal(imp.PublicKey))
			sig, err := e.Sign(ctx, want.Hash(), msg, 2)
			require.NoError(t, err)
			require.NoError(t, want.Verify(msg, sig, 2))

			// Load the blob in another client (fresh connections).
			e2 := newClient(t, addr, 1)
			pk, err := e2.Load(ctx, imp.Blob)
			require.NoError(t, err)
			require.True(t, want.Equal(pk))
			sig, err = e2.Sign(ctx, want.Hash(), msg, 2)
			require.NoError(t, err)
			require.NoError(t, want.Verify(msg, sig, 2))

			// Proof of possession.
			proof, err := e.ProvePossession(ctx, pkh)
			if kt == tezos.BLS {
				require.NoError(t, err)
				require.NoError(t, sealed.PublicKey.VerifyPossession(proof))
				_, err = e.Sign(ctx, pkh, msg, 0)
				require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
				_, err = e.Sign(ctx, pkh, msg, 3)
				require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
			} else {
				require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
			}
		})
	}

	unknown := tezos.PublicKeyHash{Type: tezos.Ed25519}
	_, err = e.Sign(ctx, unknown, msg, 2)
	require.Equal(t, domain.KindNotFound, domain.KindOf(err))
	_, err = e.ProvePossession(ctx, tezos.PublicKeyHash{Type: tezos.BLS})
	require.Equal(t, domain.KindNotFound, domain.KindOf(err))
	_, err = e.Load(ctx, []byte("not a blob"))
	require.Error(t, err)
	require.Equal(t, domain.KindInternal, domain.KindOf(err))
	require.NoError(t, e.Ready(ctx))
}

func TestKeyReachesEveryConnection(t *testing.T) {
	srv, addr := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{})
	e := newClient(t, addr, 4)
	ctx := ctxT(t, 20*time.Second)
	sealed, err := e.Generate(ctx, tezos.Ed25519)
	require.NoError(t, err)
	pkh := sealed.PublicKey.Hash()
	require.Eventually(t, func() bool {
		ss := srv.Sessions()
		if len(ss) != 4 {
			return false
		}
		for _, s := range ss {
			if !s.Initialized || len(s.Keys) != 1 || s.Keys[0] != pkh {
				return false
			}
		}
		return e.ConnectionsHolding(pkh) == e.Size()
	}, 10*time.Second, 10*time.Millisecond)

	// Requests spread over connections: concurrent signing works and every
	// signature verifies.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := []byte("spread")
			sig, err := e.Sign(ctx, pkh, m, 2)
			if err == nil {
				err = sealed.PublicKey.Verify(m, sig, 2)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestRecoversAfterEnclaveRestart(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "kms.key")
	kms1, err := localstandin.New(keyFile)
	require.NoError(t, err)
	srv1, addr := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{KMS: kms1})
	e := newClient(t, addr, 2)
	ctx := ctxT(t, 60*time.Second)

	var keys []tezos.PublicKey
	for _, kt := range tezos.KeyTypes {
		s, err := e.Generate(ctx, kt)
		require.NoError(t, err)
		keys = append(keys, s.PublicKey)
	}

	srv1.Close()
	// With the enclave gone, calls fail fast as unavailable.
	require.Eventually(t, func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := e.Sign(c, keys[0].Hash(), []byte("x"), 2)
		return err != nil && domain.KindOf(err) == domain.KindUnavailable
	}, 10*time.Second, 20*time.Millisecond)
	require.Error(t, e.Ready(ctx))
	begin := time.Now()
	_, err = e.Sign(ctx, keys[0].Hash(), []byte("x"), 2)
	require.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	require.Less(t, time.Since(begin), time.Second, "call did not fail fast")

	// A new enclave on the same address with the same KMS key file.
	kms2, err := localstandin.New(keyFile)
	require.NoError(t, err)
	startEnclave(t, addr, enclavetest.ServerOptions{KMS: kms2})
	require.Eventually(t, func() bool { return e.Ready(ctx) == nil }, 20*time.Second, 20*time.Millisecond)
	msg := []byte("after restart")
	for _, pk := range keys {
		v := uint8(2)
		sig, err := e.Sign(ctx, pk.Hash(), msg, v)
		require.NoError(t, err, "%v", pk.Type)
		require.NoError(t, pk.Verify(msg, sig, v))
	}
}

// TestStartupFailsFastWithTheCause: with nothing listening, a call does not
// wait for its deadline (a minute here) but fails as soon as every
// connection's first dial failed, naming the dial error; once the enclave
// listens, the pool connects by itself and calls succeed.
func TestStartupFailsFastWithTheCause(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()

	e := newClient(t, addr, 2)
	_, err = e.Generate(ctxT(t, time.Minute), tezos.Ed25519)
	require.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	require.NotErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "connection refused")
	require.ErrorContains(t, e.Ready(context.Background()), "connection refused")

	startEnclave(t, addr, enclavetest.ServerOptions{})
	var s ports.SealedKey
	require.Eventually(t, func() bool {
		s, err = e.Generate(ctxT(t, 20*time.Second), tezos.Ed25519)
		return err == nil
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, tezos.Ed25519, s.PublicKey.Type)
}

func TestContextCancellation(t *testing.T) {
	_, addr := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{})
	e := newClient(t, addr, 1)
	sealed, err := e.Generate(ctxT(t, 10*time.Second), tezos.Ed25519)
	require.NoError(t, err)

	// An already cancelled context fails at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.Sign(ctx, sealed.PublicKey.Hash(), []byte("x"), 2)
	require.ErrorIs(t, err, context.Canceled)

	_, addr2 := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{Options: enclaveserver.Options{ReplyDelay: time.Second}})
	e2 := newClient(t, addr2, 1)
	_, err = e2.Generate(ctxT(t, 10*time.Second), tezos.Ed25519)
	require.NoError(t, err)
	begin := time.Now()
	_, err = e2.Generate(ctxT(t, 100*time.Millisecond), tezos.Ed25519)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(begin), 700*time.Millisecond)
	// The connection survives the abandoned request.
	_, err = e2.Generate(ctxT(t, 10*time.Second), tezos.Ed25519)
	require.NoError(t, err)
}

// hostile accepts connections, answers Initialize correctly and then
// answers the next request with reply(conn).
func hostile(t *testing.T, reply func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := enclavewire.ReadFrame(c, 0); err != nil {
					return
				}
				ok, _ := enclavewire.EncodeOk(nil)
				if enclavewire.WriteFrame(c, ok) != nil {
					return
				}
				if _, err := enclavewire.ReadFrame(c, 0); err != nil {
					return
				}
				reply(c)
			}()
		}
	}()
	return l.Addr().String()
}

func TestHostileEnclave(t *testing.T) {
	cases := map[string]func(c net.Conn){
		"oversized length": func(c net.Conn) {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], 0xffffffff)
			c.Write(b[:])
			time.Sleep(2 * time.Second)
		},
		"garbage cbor": func(c net.Conn) {
			enclavewire.WriteFrame(c, []byte{0xff, 0xfe, 0xfd, 0x1c})
			time.Sleep(2 * time.Second)
		},
		"wrong shape": func(c net.Conn) {
			b, _ := enclavewire.EncodeOk(map[string]any{"public_key": "nope", "handle": -1})
			enclavewire.WriteFrame(c, b)
			time.Sleep(2 * time.Second)
		},
		"wrong key bytes": func(c net.Conn) {
			b, _ := enclavewire.EncodeOk(enclavewire.ImportResult{PublicKey: enclavewire.Tagged{Type: enclavewire.KeyBLS, Bytes: make([]byte, 48)}})
			enclavewire.WriteFrame(c, b)
			time.Sleep(2 * time.Second)
		},
		"truncated": func(c net.Conn) {
			c.Write([]byte{0, 0, 0, 10, 0xa1})
		},
		"stall": func(c net.Conn) {
			time.Sleep(3 * time.Second)
		},
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := hostile(t, reply)
			e := newClient(t, addr, 1, func(c *Config) { c.RPCTimeout = 300 * time.Millisecond })
			ctx := ctxT(t, 10*time.Second)
			require.Eventually(t, func() bool { return e.Ready(ctx) == nil }, 5*time.Second, 10*time.Millisecond)
			begin := time.Now()
			_, err := e.Load(ctx, []byte{1, 2, 3})
			require.Error(t, err)
			require.Equal(t, domain.KindUnavailable, domain.KindOf(err), "%v", err)
			require.Less(t, time.Since(begin), 5*time.Second)
			t.Log(err)
		})
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	e := newClient(t, addr, 1)
	done := make(chan error, 1)
	go func() {
		_, err := e.Generate(context.Background(), tezos.Ed25519)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, e.Close())
	select {
	case err := <-done:
		require.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	case <-time.After(5 * time.Second):
		t.Fatal("pending call not released by Close")
	}
	_, err = e.Generate(context.Background(), tezos.Ed25519)
	require.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	require.False(t, errors.Is(err, context.Canceled))
}

func BenchmarkSign(b *testing.B) {
	_, addr := startEnclave(b, "127.0.0.1:0", enclavetest.ServerOptions{})
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("ed25519/goroutines=%d", par), func(b *testing.B) {
			e := newClient(b, addr, DefaultConnections)
			ctx := context.Background()
			sealed, err := e.Generate(ctx, tezos.Ed25519)
			if err != nil {
				b.Fatal(err)
			}
			pkh := sealed.PublicKey.Hash()
			msg := make([]byte, 128)
			var wg sync.WaitGroup
			var failed sync.Once
			b.ResetTimer()
			for g := range par {
				n := b.N / par
				if g < b.N%par {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						if _, err := e.Sign(ctx, pkh, msg, 2); err != nil {
							failed.Do(func() { b.Error(err) })
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestIdleEnclaveRestart: the enclave restarts while the client is idle. The
// first request afterwards must succeed (stale connections are noticed and
// redialled before use), and an idle outage shows in Ready within about a
// second.
func TestIdleEnclaveRestart(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "kms.key")
	kms1, err := localstandin.New(keyFile)
	require.NoError(t, err)
	srv1, addr := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{KMS: kms1})
	e := newClient(t, addr, 4)
	ctx := ctxT(t, 30*time.Second)
	sk, err := e.Generate(ctx, tezos.Ed25519)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.Ready(ctx) == nil }, 5*time.Second, 10*time.Millisecond)

	// Restart quickly, well before an idle probe could notice (the short
	// pause lets the closed connections' FINs arrive, as they do at once
	// when an enclave process dies).
	srv1.Close()
	time.Sleep(50 * time.Millisecond)
	kms2, err := localstandin.New(keyFile)
	require.NoError(t, err)
	srv2, _ := startEnclave(t, addr, enclavetest.ServerOptions{KMS: kms2})
	for i := range 8 { // more requests than connections: every stale one is hit
		sig, err := e.Sign(ctx, sk.PublicKey.Hash(), []byte{byte(i)}, 2)
		require.NoError(t, err, "request %d after an idle restart", i)
		require.NoError(t, sk.PublicKey.Verify([]byte{byte(i)}, sig, 2))
	}

	// An idle outage is noticed without any request.
	srv2.Close()
	start := time.Now()
	require.Eventually(t, func() bool { return e.Ready(ctx) != nil }, 5*time.Second, 10*time.Millisecond)
	t.Logf("idle outage noticed after %v", time.Since(start).Round(time.Millisecond))
	kms3, err := localstandin.New(keyFile)
	require.NoError(t, err)
	startEnclave(t, addr, enclavetest.ServerOptions{KMS: kms3})
	start = time.Now()
	require.Eventually(t, func() bool { return e.Ready(ctx) == nil }, 5*time.Second, 5*time.Millisecond)
	t.Logf("ready again %v after the enclave came back", time.Since(start).Round(time.Millisecond))
	sig, err := e.Sign(ctx, sk.PublicKey.Hash(), []byte("back"), 2)
	require.NoError(t, err)
	require.NoError(t, sk.PublicKey.Verify([]byte("back"), sig, 2))
}
