package signer_test

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// recordLog keeps every log record (level and message with its attributes
// as text).
type recordLog struct {
	mu    sync.Mutex
	lines []string
}

func (r *recordLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (r *recordLog) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, strings.TrimSpace(string(b)))
	return len(b), nil
}

// matching returns the lines that contain every one of subs.
func (r *recordLog) matching(subs ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
next:
	for _, l := range r.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// countingEnclave counts Load calls and fails them with the error in fail.
type countingEnclave struct {
	*fakeEnclave
	loads atomic.Int64
	fail  atomic.Pointer[error]
}

func (e *countingEnclave) Load(ctx context.Context, blob []byte) (tezos.PublicKey, error) {
	e.loads.Add(1)
	if p := e.fail.Load(); p != nil {
		return tezos.PublicKey{}, *p
	}
	return e.fakeEnclave.Load(ctx, blob)
}

func (e *countingEnclave) failWith(err error) {
	if err == nil {
		e.fail.Store(nil)
		return
	}
	e.fail.Store(&err)
}

var addrRE = regexp.MustCompile(`tz[1-4][1-9A-HJ-NP-Za-km-z]{33}`)

// storeKeys generates n keys through a first service and returns their
// store and enclave.
func storeKeys(t *testing.T, n int) (*fakeEnclave, *memStore) {
	t.Helper()
	s, enc, st := newService(t)
	if n > 0 {
		_, err := s.Generate(context.Background(), "cs", tezos.Ed25519, n)
		require.NoError(t, err)
	}
	return enc, st
}

// TestLoadFailsWithOneCause: an enclave that refuses every key is one
// error, naming one key and the cause once, not one line per key (a
// command prints it as is).
func TestLoadFailsWithOneCause(t *testing.T) {
	fe, st := storeKeys(t, 40)
	enc := &countingEnclave{fakeEnclave: fe}
	enc.failWith(domain.Errorf(domain.KindUnavailable, "enclave unavailable: no healthy connection to 127.0.0.1:2000: connection refused"))
	s, err := signer.New([]signer.Vault{{Name: "cs", Enclave: enc, Store: st}}, signer.Options{LoadConcurrency: 4})
	require.NoError(t, err)
	err = s.Load(context.Background())
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	assert.Equal(t, 1, strings.Count(err.Error(), "connection refused"), err.Error())
	assert.Len(t, addrRE.FindAllString(err.Error(), -1), 1, err.Error())
	assert.NotContains(t, err.Error(), "\n")
	assert.Zero(t, s.Count())
}

// TestStartLoadingLogsOncePerCause: the daemon retries in the background
// with a growing wait, and logs a failure when its cause changes, not at
// every attempt; Ready says why meanwhile.
func TestStartLoadingLogsOncePerCause(t *testing.T) {
	fe, st := storeKeys(t, 8)
	enc := &countingEnclave{fakeEnclave: fe}
	enc.failWith(domain.Errorf(domain.KindUnavailable, "enclave unavailable: connection refused"))
	var logs recordLog
	s, err := signer.New([]signer.Vault{{Name: "cs", Enclave: enc, Store: st}}, signer.Options{Logger: logs.logger(), LoadConcurrency: 2})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.StartLoading(ctx, time.Millisecond, time.Second)

	// Several attempts (each loading keys until the first failure), one
	// line. The line is written after an attempt's loads are counted, so
	// wait for the line first, then for more attempts (LoadConcurrency
	// loads per attempt at most), then count.
	lines := func() int { return len(logs.matching("loading keys failed")) }
	require.Eventually(t, func() bool { return lines() >= 1 }, 10*time.Second, time.Millisecond)
	before := enc.loads.Load()
	require.Eventually(t, func() bool { return enc.loads.Load() >= before+6 }, 10*time.Second, time.Millisecond)
	assert.Len(t, logs.matching("loading keys failed"), 1)
	require.ErrorContains(t, s.Ready(), "connection refused")

	// Another cause: one more line, and no more after further attempts.
	enc.failWith(domain.Errorf(domain.KindInternal, "enclave error: encryption error: permission denied"))
	require.Eventually(t, func() bool { return lines() >= 2 }, 20*time.Second, time.Millisecond)
	before = enc.loads.Load()
	require.Eventually(t, func() bool { return enc.loads.Load() >= before+3 }, 20*time.Second, time.Millisecond)
	assert.Len(t, logs.matching("loading keys failed"), 2)
	assert.Len(t, logs.matching("loading keys failed", "permission denied"), 1)

	enc.failWith(nil)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	require.NoError(t, s.WaitLoaded(wctx))
	assert.Equal(t, 8, s.Count())
	assert.Len(t, logs.matching("loading keys failed"), 2)
}

// lyingEnclave fails Sign and ProvePossession as an enclave backend does
// when the enclave's signature does not verify.
type lyingEnclave struct {
	*fakeEnclave
	signs atomic.Int64
}

func (e *lyingEnclave) Sign(_ context.Context, key tezos.PublicKeyHash, _ []byte, _ uint8) (tezos.Signature, error) {
	e.signs.Add(1)
	return tezos.Signature{}, domain.Errorf(domain.KindUnavailable, "enclave unavailable: Sign reply for %s: %w", key, ports.ErrEnclaveBadSignature)
}

func (e *lyingEnclave) ProvePossession(_ context.Context, key tezos.PublicKeyHash) (tezos.Signature, error) {
	return tezos.Signature{}, domain.Errorf(domain.KindUnavailable, "enclave unavailable: ProvePossession reply for %s: %w", key, ports.ErrEnclaveBadSignature)
}

// TestBadSignatureFromTheEnclave: a signature the enclave backend refused
// as invalid is a 503 (unavailable), one error log line naming the key and
// the request kind, and no recorded watermark.
func TestBadSignatureFromTheEnclave(t *testing.T) {
	ctx := context.Background()
	fe, st := storeKeys(t, 0)
	sk, err := tezos.GeneratePrivateKey(tezos.BLS, nil)
	require.NoError(t, err)
	fe.mu.Lock()
	sealed := fe.seal(sk)
	fe.mu.Unlock()
	pkh := sealed.PublicKey.Hash().String()
	require.NoError(t, st.Put(ctx, ports.StoredKey{PKH: pkh, Blob: sealed.Blob}))

	enc := &lyingEnclave{fakeEnclave: fe}
	var logs recordLog
	marks := mem.New(mem.Config{})
	pol := signer.AllowAll()
	pol.AllowProofOfPossession = true
	s, err := signer.New([]signer.Vault{{Name: "cs", Enclave: enc, Store: st}}, signer.Options{
		Logger: logs.logger(), DefaultPolicy: pol, Watermarks: marks,
	})
	require.NoError(t, err)
	require.NoError(t, s.Load(ctx))

	for _, tc := range []struct {
		kind string
		msg  []byte
	}{{"attestation", tz4Attestation(100, 0, 1)}, {"generic", transaction}} {
		_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: tc.msg})
		require.Error(t, err)
		assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
		assert.ErrorIs(t, err, ports.ErrEnclaveBadSignature)
		lines := logs.matching("level=ERROR", "invalid signature", pkh, "kind="+tc.kind)
		assert.Len(t, lines, 1, "want one error line naming the key and the kind %s", tc.kind)
		assert.Len(t, logs.matching(pkh, "kind="+tc.kind), 1, "and no other line about it")
	}
	recs, err := marks.Export(ctx)
	require.NoError(t, err)
	assert.Empty(t, recs, "a watermark was recorded for an invalid signature")

	_, err = s.ProvePossession(ctx, signer.PossessionRequest{PKH: pkh})
	assert.ErrorIs(t, err, ports.ErrEnclaveBadSignature)
	assert.Len(t, logs.matching("level=ERROR", "invalid signature", pkh, "proof_of_possession"), 1)
	assert.EqualValues(t, 2, enc.signs.Load())
}
