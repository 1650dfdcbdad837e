// Package watermarktest is the contract suite every ports.WatermarkStore
// backend must pass (increase, refusal, identical replay, the identical
// request over a mark recorded without its signature, independence of
// keys, export/import, concurrent conflicting commits; for stores shared
// between daemons, one instance learning what another recorded), plus a Commit
// benchmark that reports p50 and p99 latencies.
package watermarktest

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/blake2b"
)

// Chain ids used by the suite.
const (
	Mainnet  = "NetXdQprcVkpaWU"
	Ghostnet = "NetXnHfVqm9iesp"
)

var keySeq atomic.Uint64

// PKH returns a distinct tz1 key hash (checksum included) for each call. A
// time-based part keeps hashes distinct across processes sharing one
// database.
func PKH() string {
	var h tezos.PublicKeyHash
	h.Type = tezos.Ed25519
	binary.BigEndian.PutUint64(h.Hash[:8], keySeq.Add(1))
	binary.BigEndian.PutUint64(h.Hash[8:16], uint64(time.Now().UnixNano()))
	return h.String()
}

// Key returns a fresh key of the given kind on chain.
func Key(chain, kind string) watermark.Key {
	return watermark.Key{ChainID: chain, PKH: PKH(), Kind: kind}
}

// M builds a mark whose digest starts with d and whose signature is
// Sig(tag) (none when tag is empty).
func M(level, round int32, d byte, tag string) watermark.Mark {
	return watermark.Mark{Level: level, Round: round, Digest: [32]byte{d}, Signature: Sig(tag)}
}

// Sig returns a well-formed generic signature (sig…) derived from tag, or
// "" for an empty tag: stores only record signatures that parse.
func Sig(tag string) string {
	if tag == "" {
		return ""
	}
	b := blake2b.Sum512([]byte(tag))
	return tezos.Signature{Bytes: b[:64]}.String()
}

// Factory opens a fresh, empty store. The test owns its cleanup.
type Factory func(t testing.TB) ports.WatermarkStore

// Run runs the contract suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	t.Run("Increase", func(t *testing.T) { testIncrease(t, newStore(t)) })
	t.Run("Refuse", func(t *testing.T) { testRefuse(t, newStore(t)) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, newStore(t)) })
	t.Run("Resign", func(t *testing.T) { testResign(t, newStore) })
	t.Run("Independent", func(t *testing.T) { testIndependent(t, newStore(t)) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, newStore(t)) })
	t.Run("ExportImport", func(t *testing.T) { testExportImport(t, newStore(t), newStore(t)) })
	t.Run("ImportNeverLowers", func(t *testing.T) { testImportNeverLowers(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { Concurrent(t, newStore(t)) })
	t.Run("ConcurrentReplay", func(t *testing.T) { ConcurrentReplay(t, newStore(t)) })
}

func commitOK(t testing.TB, s ports.WatermarkStore, k watermark.Key, m watermark.Mark) {
	t.Helper()
	got, err := s.Commit(context.Background(), k, m)
	require.NoError(t, err, "commit %s for %s", m, k)
	require.Equal(t, m, got)
}

func assertCheck(t testing.TB, s ports.WatermarkStore, k watermark.Key, want watermark.Mark) {
	t.Helper()
	got, ok, err := s.Check(context.Background(), k)
	require.NoError(t, err)
	require.True(t, ok, "Check knows the mark this store committed")
	require.Equal(t, want, got)
}

func testIncrease(t *testing.T, s ports.WatermarkStore) {
	ctx := context.Background()
	k := Key(Mainnet, watermark.KindBlock)
	_, ok, err := s.Check(ctx, k)
	require.NoError(t, err)
	require.False(t, ok, "nothing recorded yet")
	for _, m := range []watermark.Mark{M(10, 0, 1, "s1"), M(10, 1, 2, "s2"), M(11, 0, 3, "s3"), M(200, 7, 4, "s4")} {
		commitOK(t, s, k, m)
		assertCheck(t, s, k, m)
	}
}

func testRefuse(t *testing.T, s ports.WatermarkStore) {
	ctx := context.Background()
	k := Key(Mainnet, watermark.KindPreattestation)
	rec := M(120, 2, 1, "s1")
	commitOK(t, s, k, rec)
	for _, m := range []watermark.Mark{M(120, 2, 2, "x"), M(120, 1, 3, "x"), M(119, 9, 4, "x"), M(120, 1, 1, "x")} {
		got, err := s.Commit(ctx, k, m)
		require.Error(t, err, "commit %s over %s", m, rec)
		assert.Equal(t, watermark.Mark{}, got)
		assert.Equal(t, domain.KindConflict, domain.KindOf(err), err.Error())
		assert.Contains(t, err.Error(), fmt.Sprintf("preattestation %s is not above the recorded %s for %s on %s", m, rec, k.PKH, k.ChainID))
	}
	assertCheck(t, s, k, rec)
	// The refusals did not move the mark: the next level is still accepted.
	commitOK(t, s, k, M(121, 0, 5, "s5"))
}

func testReplay(t *testing.T, s ports.WatermarkStore) {
	ctx := context.Background()
	k := Key(Mainnet, watermark.KindAttestation)
	rec := M(50, 0, 7, "first")
	commitOK(t, s, k, rec)
	for i := 0; i < 3; i++ {
		got, err := s.Commit(ctx, k, M(50, 0, 7, fmt.Sprintf("other%d", i)))
		require.NoError(t, err)
		assert.Equal(t, rec, got, "identical request gets the recorded signature")
	}
	assertCheck(t, s, k, rec)
	// Once superseded, the old request is refused.
	commitOK(t, s, k, M(51, 0, 8, "second"))
	_, err := s.Commit(ctx, k, M(50, 0, 7, "first"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
}

// testResign: a mark recorded with its digest but no signature (Signatory
// records marks so; here imported without one) lets the very same message
// be signed again (Commit returns the new mark and records nothing), and
// refuses any other message at that level and round and anything lower;
// a higher mark is recorded as usual. For every kind; a block mark without
// signature covers its whole level (watermark.Enforced).
func testResign(t *testing.T, newStore Factory) {
	ctx := context.Background()
	rec := M(500, 2, 7, "")
	cases := []struct {
		name string
		next watermark.Mark
		want string // "resign", "conflict" or "accept"
	}{
		{"identical bytes", M(500, 2, 7, "again"), "resign"},
		{"same level and round, other payload", M(500, 2, 8, "x"), "conflict"},
		{"lower round", M(500, 1, 9, "x"), "conflict"},
		{"lower level", M(499, 5, 9, "x"), "conflict"},
		{"lower round, same digest", M(500, 1, 7, "x"), "conflict"},
		{"higher round", M(500, 3, 9, "higher"), "accept"},
		{"higher level", M(501, 0, 9, "higher"), "accept"},
	}
	for _, kind := range watermark.Kinds {
		for _, c := range cases {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				s := newStore(t)
				k := Key(Mainnet, kind)
				require.NoError(t, s.Import(ctx, []watermark.Record{{Key: k, Mark: rec}}))
				want := c.want
				if kind == watermark.KindBlock {
					// An unsigned block mark covers its level: a higher
					// round is refused, and the same digest at that level
					// is the same block (whichever round it is read at).
					switch c.name {
					case "higher round":
						want = "conflict"
					case "lower round, same digest":
						want = "resign"
					}
				}
				got, err := s.Commit(ctx, k, c.next)
				switch want {
				case "resign", "accept":
					require.NoError(t, err)
					assert.Equal(t, c.next, got, "the caller answers with its own fresh signature")
				case "conflict":
					require.Error(t, err)
					assert.Equal(t, domain.KindConflict, domain.KindOf(err), err.Error())
				}
				recs, err := s.Export(ctx)
				require.NoError(t, err)
				require.Len(t, recs, 1)
				if want == "accept" {
					assert.Equal(t, c.next, recs[0].Mark, "the higher mark is recorded")
					return
				}
				assert.Equal(t, rec.Digest, recs[0].Digest, "nothing recorded")
				assert.Equal(t, rec.Level, recs[0].Level, "nothing recorded")
				assert.Empty(t, recs[0].Signature, "nothing recorded")
				if want == "resign" {
					// Every identical repeat is signed again.
					again := M(500, 2, 7, "third")
					got, err := s.Commit(ctx, k, again)
					require.NoError(t, err)
					assert.Equal(t, again, got)
				}
			})
		}
	}
}

func testIndependent(t *testing.T, s ports.WatermarkStore) {
	base := Key(Mainnet, watermark.KindBlock)
	keys := []watermark.Key{
		base,
		{ChainID: base.ChainID, PKH: PKH(), Kind: base.Kind},
		{ChainID: base.ChainID, PKH: base.PKH, Kind: watermark.KindPreattestation},
		{ChainID: base.ChainID, PKH: base.PKH, Kind: watermark.KindAttestation},
		{ChainID: Ghostnet, PKH: base.PKH, Kind: base.Kind},
	}
	for i, k := range keys {
		commitOK(t, s, k, M(100, 1, byte(i), fmt.Sprint("s", i)))
	}
	for i, k := range keys {
		assertCheck(t, s, k, M(100, 1, byte(i), fmt.Sprint("s", i)))
	}
}

func testInvalid(t *testing.T, s ports.WatermarkStore) {
	ctx := context.Background()
	for _, k := range []watermark.Key{
		{ChainID: "../../etc/passw", PKH: PKH(), Kind: watermark.KindBlock},
		{ChainID: Mainnet, PKH: "tz1/../../../../../../../../../../..", Kind: watermark.KindBlock},
		{ChainID: Mainnet, PKH: PKH(), Kind: "generic"},
	} {
		_, err := s.Commit(ctx, k, M(1, 0, 1, "s"))
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
		_, _, err = s.Check(ctx, k)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
	}
	k := Key(Mainnet, watermark.KindBlock)
	_, err := s.Commit(ctx, k, M(1, 0, 1, ""))
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "commit without signature")
	_, err = s.Commit(ctx, k, M(-1, 0, 1, "s"))
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "negative level")
	err = s.Import(ctx, []watermark.Record{{Key: watermark.Key{ChainID: "x"}, Mark: M(1, 0, 0, "")}})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "import of a malformed record")
	recs, err := s.Export(ctx)
	require.NoError(t, err)
	assert.Empty(t, recs, "nothing was recorded by invalid calls")
}

// Sorted returns recs sorted by chain, key hash and kind.
func Sorted(recs []watermark.Record) []watermark.Record {
	out := slices.Clone(recs)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.ChainID != b.ChainID {
			return a.ChainID < b.ChainID
		}
		if a.PKH != b.PKH {
			return a.PKH < b.PKH
		}
		return a.Kind < b.Kind
	})
	return out
}

func testExportImport(t *testing.T, s, fresh ports.WatermarkStore) {
	ctx := context.Background()
	var want []watermark.Record
	for i, chain := range []string{Mainnet, Ghostnet} {
		for j, kind := range watermark.Kinds {
			k := Key(chain, kind)
			m := M(int32(1000+i), int32(j), byte(i*10+j), fmt.Sprintf("sig%d%d", i, j))
			commitOK(t, s, k, m)
			want = append(want, watermark.Record{Key: k, Mark: m})
		}
	}
	got, err := s.Export(ctx)
	require.NoError(t, err)
	require.Equal(t, Sorted(want), Sorted(got))

	require.NoError(t, fresh.Import(ctx, got))
	again, err := fresh.Export(ctx)
	require.NoError(t, err)
	require.Equal(t, Sorted(want), Sorted(again))
	for _, r := range want {
		assertCheck(t, fresh, r.Key, r.Mark)
		// The imported marks are enforced and replayed.
		_, err := fresh.Commit(ctx, r.Key, watermark.Mark{Level: r.Level, Round: r.Round, Digest: [32]byte{0xff}, Signature: Sig("x")})
		assert.Equal(t, domain.KindConflict, domain.KindOf(err))
		m, err := fresh.Commit(ctx, r.Key, watermark.Mark{Level: r.Level, Round: r.Round, Digest: r.Digest, Signature: Sig("x")})
		require.NoError(t, err)
		assert.Equal(t, r.Signature, m.Signature)
	}
}

func testImportNeverLowers(t *testing.T, s ports.WatermarkStore) {
	ctx := context.Background()
	k1, k2, k3 := Key(Mainnet, watermark.KindBlock), Key(Mainnet, watermark.KindBlock), Key(Ghostnet, watermark.KindAttestation)
	commitOK(t, s, k1, M(100, 5, 1, "a"))
	commitOK(t, s, k2, M(100, 5, 2, "b"))
	require.NoError(t, s.Import(ctx, []watermark.Record{
		{Key: k1, Mark: M(100, 4, 9, "lower")},
		{Key: k1, Mark: M(99, 9, 9, "lower")},
		{Key: k1, Mark: M(100, 5, 9, "same position")},
		{Key: k2, Mark: M(101, 0, 3, "higher")},
		{Key: k3, Mark: M(7, 0, 4, "")},
	}))
	got, err := s.Export(ctx)
	require.NoError(t, err)
	require.Equal(t, Sorted([]watermark.Record{
		{Key: k1, Mark: M(100, 5, 1, "a")},
		{Key: k2, Mark: M(101, 0, 3, "higher")},
		{Key: k3, Mark: M(7, 0, 4, "")},
	}), Sorted(got))
	_, err = s.Commit(ctx, k2, M(101, 0, 5, "x"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "the imported mark is enforced")
	resigned, err := s.Commit(ctx, k3, M(7, 0, 4, "x"))
	require.NoError(t, err, "the identical request over a mark without signature is signed again")
	assert.Equal(t, M(7, 0, 4, "x"), resigned)
	_, err = s.Commit(ctx, k3, M(7, 0, 5, "x"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "another message at that level and round")
	commitOK(t, s, k3, M(8, 0, 5, "y"))
}

// Goroutines is how many goroutines the concurrency tests run.
const Goroutines = 64

// Concurrent has Goroutines goroutines commit conflicting marks (same level
// and round, different digests) for one key, spread over stores (which may
// be separate instances sharing one database): exactly one is accepted and
// every other is refused with a conflict.
func Concurrent(t *testing.T, stores ...ports.WatermarkStore) {
	ctx := context.Background()
	k := Key(Mainnet, watermark.KindBlock)
	commitOK(t, stores[0], k, M(9, 0, 0, "base"))
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		accepted atomic.Int32
		refused  atomic.Int32
		winner   atomic.Int32
		errs     = make(chan error, Goroutines)
	)
	for i := 0; i < Goroutines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			m := M(10, 0, byte(i+1), fmt.Sprint("sig", i))
			got, err := stores[i%len(stores)].Commit(ctx, k, m)
			switch {
			case err == nil && got == m:
				accepted.Add(1)
				winner.Store(int32(i))
			case domain.KindOf(err) == domain.KindConflict:
				refused.Add(1)
			default:
				errs <- fmt.Errorf("goroutine %d: got %+v, %v", i, got, err)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.EqualValues(t, 1, accepted.Load(), "exactly one accepted")
	require.EqualValues(t, Goroutines-1, refused.Load(), "all others refused")
	w := int(winner.Load())
	for _, s := range stores {
		got, err := s.Commit(ctx, k, M(10, 0, byte(w+1), "retry"))
		require.NoError(t, err)
		assert.Equal(t, Sig(fmt.Sprint("sig", w)), got.Signature, "every store replays the winner")
	}
}

// ConcurrentReplay has Goroutines goroutines commit the identical request
// (same level, round and digest) with different signatures, spread over
// stores: all succeed and all answer with one and the same signature.
func ConcurrentReplay(t *testing.T, stores ...ports.WatermarkStore) {
	ctx := context.Background()
	k := Key(Mainnet, watermark.KindAttestation)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		sigs  = make([]string, Goroutines)
		errs  = make([]error, Goroutines)
	)
	for i := 0; i < Goroutines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			got, err := stores[i%len(stores)].Commit(ctx, k, M(10, 0, 42, fmt.Sprint("sig", i)))
			sigs[i], errs[i] = got.Signature, err
		}(i)
	}
	close(start)
	wg.Wait()
	for i := range errs {
		require.NoError(t, errs[i], "goroutine %d", i)
		require.Equal(t, sigs[0], sigs[i], "goroutine %d got another signature", i)
	}
}

// SeesOther checks two instances of a store shared between daemons (a and
// b, separate clients on one database): b does not know a mark a recorded
// until it commits on that key; a conflicting commit of b is refused and
// teaches b the recorded mark (Check then answers it), and an identical one
// replays a's signature.
func SeesOther(t *testing.T, a, b ports.WatermarkStore) {
	ctx := context.Background()
	k := Key(Mainnet, watermark.KindBlock)
	_, err := a.Commit(ctx, k, M(100, 0, 1, "fromA"))
	require.NoError(t, err)
	_, ok, err := b.Check(ctx, k)
	require.NoError(t, err)
	assert.False(t, ok, "b has not seen the mark yet")
	_, err = b.Commit(ctx, k, M(100, 0, 2, "fromB"))
	require.Error(t, err)
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	assert.Contains(t, err.Error(), "not above the recorded level 100 round 0")
	m, ok, err := b.Check(ctx, k)
	require.NoError(t, err)
	require.True(t, ok, "the refusal taught b the recorded mark")
	assert.Equal(t, Sig("fromA"), m.Signature)
	got, err := b.Commit(ctx, k, M(100, 0, 1, "fromB"))
	require.NoError(t, err)
	assert.Equal(t, Sig("fromA"), got.Signature, "b replays a's signature")
}

// ContextBound checks that a store whose Commit goes over the network
// fails a Commit under an ended context as unavailable, recording nothing
// (Check and Export see no mark).
func ContextBound(t *testing.T, s ports.WatermarkStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := Key(Mainnet, watermark.KindBlock)
	_, err := s.Commit(ctx, k, M(1, 0, 1, "s"))
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	_, ok, _ := s.Check(context.Background(), k)
	assert.False(t, ok)
	recs, err := s.Export(context.Background())
	require.NoError(t, err)
	assert.Empty(t, recs)
}

// BenchmarkCommit measures sequential Commits of rising marks on one key and
// reports p50 and p99 latencies (ns) besides the mean.
func BenchmarkCommit(b *testing.B, s ports.WatermarkStore) {
	ctx := context.Background()
	warmUp(b, s)
	k := Key(Mainnet, watermark.KindBlock)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := s.Commit(ctx, k, M(int32(i+1), 0, byte(i), "sig")); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	ReportPercentiles(b, lat)
}

// BenchmarkCommitParallel measures Commits from parallel goroutines, each on
// its own key (as a baker with many keys does), and reports p50 and p99.
func BenchmarkCommitParallel(b *testing.B, s ports.WatermarkStore) {
	ctx := context.Background()
	warmUp(b, s)
	var mu sync.Mutex
	var all []time.Duration
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		k := Key(Mainnet, watermark.KindAttestation)
		var lat []time.Duration
		for i := int32(1); pb.Next(); i++ {
			t0 := time.Now()
			if _, err := s.Commit(ctx, k, M(i, 0, byte(i), "sig")); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	ReportPercentiles(b, all)
}

// warmUp commits a few marks on a key of its own so that connection set-up
// and first-use costs stay out of the measurement.
func warmUp(b *testing.B, s ports.WatermarkStore) {
	k := Key(Ghostnet, watermark.KindBlock)
	for i := int32(1); i <= 10; i++ {
		if _, err := s.Commit(context.Background(), k, M(i, 0, byte(i), "sig")); err != nil {
			b.Fatal(err)
		}
	}
}

// ReportPercentiles reports the p50 and p99 of lat as p50-ns and p99-ns.
func ReportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(p(0.50), "p50-ns")
	b.ReportMetric(p(0.99), "p99-ns")
}
