// Package storagetest is the contract test every key storage driver
// (ports.KeyStore implementation) must pass: empty store, round trip,
// replacement without duplicates, many keys, concurrent writers, a second
// store instance on the same backing, and rejection of bad input; and
// FailsDuringOutage, for drivers on a service that can go down. A driver's
// own tests call Run with a function that prepares a fresh backing.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Factory opens a new store instance on one backing (one file, one
// Firestore project...). Every call returns a distinct instance on the same
// backing. The suite closes instances that implement io.Closer; a factory
// must not close them itself.
type Factory func(t *testing.T) ports.KeyStore

// Options tune the suite.
type Options struct {
	// ManyKeys is the number of keys of the "many keys" case; 0 means 700,
	// which crosses the page boundaries of paginated drivers.
	ManyKeys int
	// Timeout bounds each case; 0 means two minutes.
	Timeout time.Duration
}

// Run runs the contract suite. newBacking prepares a fresh, empty backing
// for one case and returns the factory opening stores on it.
func Run(t *testing.T, newBacking func(t *testing.T) Factory) {
	RunWithOptions(t, newBacking, Options{})
}

// RunWithOptions is Run with tuning options.
func RunWithOptions(t *testing.T, newBacking func(t *testing.T) Factory, o Options) {
	if o.ManyKeys == 0 {
		o.ManyKeys = 700
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	cases := []struct {
		name string
		fn   func(ctx context.Context, t *testing.T, open func() ports.KeyStore)
	}{
		{"Empty", testEmpty},
		{"RoundTrip", testRoundTrip},
		{"Replace", testReplace},
		{"ManyKeys", func(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
			testMany(ctx, t, open, o.ManyKeys)
		}},
		{"ConcurrentPuts", testConcurrent},
		{"SecondInstance", testSecondInstance},
		{"RejectsBadInput", testBadInput},
		{"CanceledContext", testCanceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			factory := newBacking(t)
			open := func() ports.KeyStore {
				s := factory(t)
				if s == nil {
					t.Fatal("factory returned a nil store")
				}
				if cl, ok := s.(io.Closer); ok {
					t.Cleanup(func() {
						if err := cl.Close(); err != nil {
							t.Errorf("close store: %v", err)
						}
					})
				}
				return s
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
			defer cancel()
			c.fn(ctx, t, open)
		})
	}
}

// PKH returns a deterministic, valid address of key type kt (tz1..tz4) for
// index i.
func PKH(kt tezos.KeyType, i int) string {
	var seed [9]byte
	seed[0] = byte(kt)
	binary.BigEndian.PutUint64(seed[1:], uint64(i))
	sum := sha256.Sum256(seed[:])
	var h tezos.PublicKeyHash
	h.Type = kt
	copy(h.Hash[:], sum[:])
	return h.String()
}

// Blob returns a deterministic binary blob for index i and version v, with
// every byte value represented so that encodings are exercised.
func Blob(i, v int) []byte {
	b := make([]byte, 0, 300)
	b = fmt.Appendf(b, "sealed-%d-%d:", i, v)
	for c := 0; c < 256; c++ {
		b = append(b, byte(c))
	}
	return b
}

// shortBlob is a small blob (the size of a sealed key) for bulk cases.
func shortBlob(i int) []byte { return fmt.Appendf(nil, "sealed-%08d-\x00\xff", i) }

func mustList(ctx context.Context, t *testing.T, s ports.KeyStore) map[string][]byte {
	t.Helper()
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	m := make(map[string][]byte, len(keys))
	for _, k := range keys {
		if _, dup := m[k.PKH]; dup {
			t.Fatalf("List returned %s twice", k.PKH)
		}
		m[k.PKH] = k.Blob
	}
	return m
}

func mustPut(ctx context.Context, t *testing.T, s ports.KeyStore, pkh string, blob []byte) {
	t.Helper()
	if err := s.Put(ctx, ports.StoredKey{PKH: pkh, Blob: blob}); err != nil {
		t.Fatalf("Put(%s): %v", pkh, err)
	}
}

func testEmpty(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	s := open()
	if got := mustList(ctx, t, s); len(got) != 0 {
		t.Fatalf("new store lists %d keys, want 0", len(got))
	}
}

func testRoundTrip(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	s := open()
	want := map[string][]byte{}
	for i, kt := range tezos.KeyTypes {
		pkh, blob := PKH(kt, i), Blob(i, 0)
		input := bytes.Clone(blob)
		mustPut(ctx, t, s, pkh, input)
		for j := range input { // the store must not keep the caller's slice
			input[j] = 0
		}
		want[pkh] = blob
	}
	got := mustList(ctx, t, s)
	if len(got) != len(want) {
		t.Fatalf("List returned %d keys, want %d", len(got), len(want))
	}
	for pkh, blob := range want {
		if !bytes.Equal(got[pkh], blob) {
			t.Fatalf("key %s: blob differs after round trip (got %d bytes, want %d)", pkh, len(got[pkh]), len(blob))
		}
	}
}

func testReplace(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	s := open()
	a, b := PKH(tezos.BLS, 1), PKH(tezos.Ed25519, 2)
	mustPut(ctx, t, s, a, Blob(1, 1))
	mustPut(ctx, t, s, b, Blob(2, 1))
	mustPut(ctx, t, s, a, Blob(1, 2))
	got := mustList(ctx, t, s)
	if len(got) != 2 {
		t.Fatalf("after re-putting one of two keys List returned %d keys, want 2", len(got))
	}
	if !bytes.Equal(got[a], Blob(1, 2)) {
		t.Fatalf("key %s holds an old blob after replacement", a)
	}
	if !bytes.Equal(got[b], Blob(2, 1)) {
		t.Fatalf("key %s changed although it was not put again", b)
	}
	// A fresh instance sees the replacement too.
	if got := mustList(ctx, t, open()); !bytes.Equal(got[a], Blob(1, 2)) || len(got) != 2 {
		t.Fatalf("second instance: %d keys, replacement visible=%v", len(got), bytes.Equal(got[a], Blob(1, 2)))
	}
}

func testMany(ctx context.Context, t *testing.T, open func() ports.KeyStore, n int) {
	s := open()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				kt := tezos.KeyTypes[i%len(tezos.KeyTypes)]
				if err := s.Put(ctx, ports.StoredKey{PKH: PKH(kt, i), Blob: shortBlob(i)}); err != nil {
					errs <- fmt.Errorf("Put #%d: %w", i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := mustList(ctx, t, open())
	if len(got) != n {
		t.Fatalf("List returned %d keys, want %d", len(got), n)
	}
	for i := 0; i < n; i++ {
		pkh := PKH(tezos.KeyTypes[i%len(tezos.KeyTypes)], i)
		if !bytes.Equal(got[pkh], shortBlob(i)) {
			t.Fatalf("key #%d (%s) missing or wrong", i, pkh)
		}
	}
}

func testConcurrent(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	// Two instances on the same backing, many goroutines each: nothing may
	// be lost to a read-modify-write race.
	stores := []ports.KeyStore{open(), open()}
	const goroutines, perG = 24, 5
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := stores[g%len(stores)]
			for j := 0; j < perG; j++ {
				i := g*perG + j
				if err := s.Put(ctx, ports.StoredKey{PKH: PKH(tezos.Secp256k1, i), Blob: Blob(i, 0)}); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Put: %v", err)
	}
	got := mustList(ctx, t, stores[0])
	if len(got) != goroutines*perG {
		var missing []string
		for i := 0; i < goroutines*perG; i++ {
			if _, ok := got[PKH(tezos.Secp256k1, i)]; !ok {
				missing = append(missing, fmt.Sprint(i))
			}
		}
		sort.Strings(missing)
		t.Fatalf("after %d concurrent puts List returned %d keys; missing %v", goroutines*perG, len(got), missing)
	}
}

func testSecondInstance(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	a := open()
	mustPut(ctx, t, a, PKH(tezos.P256, 1), Blob(1, 0))
	b := open()
	if got := mustList(ctx, t, b); !bytes.Equal(got[PKH(tezos.P256, 1)], Blob(1, 0)) {
		t.Fatalf("second instance does not see a key put through the first (lists %d keys)", len(got))
	}
	mustPut(ctx, t, b, PKH(tezos.P256, 2), Blob(2, 0))
	if got := mustList(ctx, t, a); len(got) != 2 || !bytes.Equal(got[PKH(tezos.P256, 2)], Blob(2, 0)) {
		t.Fatalf("first instance does not see a key put through the second (lists %d keys)", len(got))
	}
}

func testBadInput(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	s := open()
	bad := []struct {
		name string
		k    ports.StoredKey
	}{
		{"empty address", ports.StoredKey{PKH: "", Blob: Blob(0, 0)}},
		{"not an address", ports.StoredKey{PKH: "tz1notanaddress", Blob: Blob(0, 0)}},
		{"contract address", ports.StoredKey{PKH: "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXitn", Blob: Blob(0, 0)}},
		{"path traversal", ports.StoredKey{PKH: "../" + PKH(tezos.Ed25519, 0), Blob: Blob(0, 0)}},
		{"empty blob", ports.StoredKey{PKH: PKH(tezos.Ed25519, 0), Blob: nil}},
	}
	for _, b := range bad {
		err := s.Put(ctx, b.k)
		if err == nil {
			t.Fatalf("Put with %s succeeded, want an error", b.name)
		}
		if domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("Put with %s: error kind %v, want invalid (%v)", b.name, domain.KindOf(err), err)
		}
	}
	if got := mustList(ctx, t, s); len(got) != 0 {
		t.Fatalf("rejected puts stored %d keys", len(got))
	}
}

func testCanceled(ctx context.Context, t *testing.T, open func() ports.KeyStore) {
	s := open()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, ports.StoredKey{PKH: PKH(tezos.Ed25519, 9), Blob: Blob(9, 0)}); err == nil {
		t.Fatal("Put with a canceled context succeeded")
	}
	if _, err := s.List(cctx); err == nil {
		t.Fatal("List with a canceled context succeeded")
	}
	if got := mustList(ctx, t, s); len(got) != 0 {
		t.Fatalf("a Put with a canceled context stored %d keys", len(got))
	}
}

// FailsDuringOutage checks s while its backing is down: Put (of a key
// derived from index 2, with blob "two") and List each fail within budget
// (plus a second of slack) with an error of kind Unavailable whose text
// contains every string of mentions (what says which store failed). The
// caller stops the backing before and checks what is stored after.
func FailsDuringOutage(t *testing.T, s ports.KeyStore, budget time.Duration, mentions ...string) {
	t.Helper()
	for _, op := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"Put", func(ctx context.Context) error {
			return s.Put(ctx, ports.StoredKey{PKH: PKH(tezos.BLS, 2), Blob: []byte("two")})
		}},
		{"List", func(ctx context.Context) error { _, err := s.List(ctx); return err }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		start := time.Now()
		err := op.run(ctx)
		took := time.Since(start)
		cancel()
		t.Logf("%s during the outage failed after %v: %v", op.name, took.Round(time.Millisecond), err)
		if err == nil {
			t.Fatalf("%s succeeded while the backing was down", op.name)
		}
		if took > budget+time.Second {
			t.Fatalf("%s took %v, beyond its %v deadline", op.name, took, budget)
		}
		if domain.KindOf(err) != domain.KindUnavailable {
			t.Fatalf("%s error kind %v, want unavailable: %v", op.name, domain.KindOf(err), err)
		}
		for _, m := range mentions {
			if !strings.Contains(err.Error(), m) {
				t.Fatalf("%s error does not mention %q: %v", op.name, m, err)
			}
		}
	}
}
