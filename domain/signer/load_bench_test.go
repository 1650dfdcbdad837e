package signer_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/confidentialspace"
	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// sealKeys creates n Ed25519 keys sealed with kms, as the enclave would have
// sealed them, and returns them as stored entries.
func sealKeys(tb testing.TB, kms interface{ Seal([]byte) ([]byte, error) }, n int) []ports.StoredKey {
	tb.Helper()
	out := make([]ports.StoredKey, 0, n)
	for range n {
		sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
		if err != nil {
			tb.Fatal(err)
		}
		pk, err := sk.Public()
		if err != nil {
			tb.Fatal(err)
		}
		w, err := enclavewire.NewPrivateKey(sk)
		if err != nil {
			tb.Fatal(err)
		}
		plain, err := enclavewire.MarshalPrivateKey(w)
		w.Zero()
		sk.Zero()
		if err != nil {
			tb.Fatal(err)
		}
		blob, err := kms.Seal(plain)
		clear(plain)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, ports.StoredKey{PKH: pk.Hash().String(), Blob: blob})
	}
	return out
}

// allSessionsHold reports whether there are want sessions and each holds n
// keys.
func allSessionsHold(srv *enclaveserver.Server, want, n int) bool {
	ss := srv.Sessions()
	if len(ss) != want {
		return false
	}
	for _, s := range ss {
		if len(s.Keys) < n {
			return false
		}
	}
	return true
}

// rawImportOnce imports every stored key exactly once, spreading them over
// conns plain protocol connections (no pool, no replication): the floor of
// what a start-up that imports each key on a single connection could reach.
func rawImportOnce(b *testing.B, addr string, stored []ports.StoredKey, conns int) {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			call := func(req *enclavewire.Request, out any) error {
				payload, err := enclavewire.EncodeRequest(req)
				if err != nil {
					return err
				}
				if err := enclavewire.WriteFrame(nc, payload); err != nil {
					return err
				}
				frame, err := enclavewire.ReadFrame(nc, enclavewire.DefaultMaxFrame)
				if err != nil {
					return err
				}
				return enclavewire.DecodeReply(frame, out)
			}
			if err := call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "w", EncryptionKeyPath: "k"}), nil); err != nil {
				errs <- err
				return
			}
			for i := c; i < len(stored); i += conns {
				var r enclavewire.ImportResult
				if err := call(enclavewire.NewImport(stored[i].Blob), &r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkLoad1000 measures the daemon's start-up: Service.Load of 1,000
// stored keys through the real Confidential Space client into the mock
// enclave (loopback TCP, local AES-GCM KMS, 1 ms per KMS call as a stand-in
// for Cloud KMS). It reports
//
//   - load-ms: until Load returns (every key imported on at least one
//     connection: the daemon starts listening then), the "all keys ready"
//     figure, goal < 1 s;
//   - all-conns-ms: until every pooled connection holds every key (the
//     pool imports keys on every connection, handles being per connection).
//
// Sub-benchmarks vary the pool size (connections) to show what bounds it,
// and "floor" imports each key once over 4 raw connections (what Load could
// take if keys were replicated to the other connections after start-up).
func BenchmarkLoad1000(b *testing.B) {
	const nkeys = 1000
	kms, err := localstandin.New(filepath.Join(b.TempDir(), "kms.key"))
	if err != nil {
		b.Fatal(err)
	}
	stored := sealKeys(b, kms, nkeys)
	srv := enclavetest.NewServer(b, enclavetest.ServerOptions{KMS: kms, KMSDelay: time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	host, port, _ := net.SplitHostPort(ln.Addr().String())

	b.Run("floor/raw-import-once-over-4-connections", func(b *testing.B) {
		for b.Loop() {
			rawImportOnce(b, ln.Addr().String(), stored, confidentialspace.DefaultConnections)
		}
	})
	for _, conns := range []int{1, confidentialspace.DefaultConnections, 16} {
		b.Run(fmt.Sprintf("connections=%d", conns), func(b *testing.B) {
			var loadTotal, allTotal time.Duration
			for b.Loop() {
				enc, err := confidentialspace.New(confidentialspace.Config{
					Host: host, Port: port, WIPProviderPath: "bench/wip", EncryptionKeyPath: "bench/kms",
					Connections: conns,
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				svc, err := signer.New([]signer.Vault{{Name: "cs", Enclave: enc, Store: &memStore{keys: stored}}}, signer.Options{})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := svc.Load(context.Background()); err != nil {
					b.Fatal(err)
				}
				loadTotal += time.Since(start)
				if got := len(svc.List()); got != nkeys {
					b.Fatalf("loaded %d keys, want %d", got, nkeys)
				}
				deadline := time.Now().Add(time.Minute)
				for !allSessionsHold(srv, conns, nkeys) {
					if time.Now().After(deadline) {
						b.Fatalf("connections did not all import %d keys within a minute", nkeys)
					}
					time.Sleep(time.Millisecond)
				}
				allTotal += time.Since(start)
				b.StopTimer()
				enc.Close()
				for len(srv.Sessions()) != 0 { // let the enclave drop the sessions
					time.Sleep(time.Millisecond)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(loadTotal.Milliseconds())/float64(b.N), "load-ms")
			b.ReportMetric(float64(allTotal.Milliseconds())/float64(b.N), "all-conns-ms")
		})
	}
}
