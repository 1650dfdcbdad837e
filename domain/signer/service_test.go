package signer_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
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

// newService returns a service with one vault "cs" over a fresh fake enclave
// and store, allowing everything.
func newService(t *testing.T) (*signer.Service, *fakeEnclave, *memStore) {
	t.Helper()
	enc, st := newFakeEnclave(), &memStore{}
	return vaultService(t, enc, st, signer.Options{DefaultPolicy: signer.AllowAll(), Watermarks: mem.New(mem.Config{})}), enc, st
}

// vaultService returns a service with one vault "cs" over enc and st.
func vaultService(t *testing.T, enc *fakeEnclave, st *memStore, opts signer.Options) *signer.Service {
	t.Helper()
	s, err := signer.New([]signer.Vault{{Name: "cs", Enclave: enc, Store: st}}, opts)
	require.NoError(t, err)
	return s
}

// transaction is a transaction forged by Taquito (domain/request/testdata).
var transaction = mustHex("0301080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da6c000a11181f262d343b424950575e656c737a81888f8c0bbb97b102e852ac02c0843d0001141b222930373e454c535a61686f767d848b929900")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestGenerateSignAndReload(t *testing.T) {
	ctx := context.Background()
	s, enc, st := newService(t)
	msg := transaction
	var keys []signer.Key
	for _, kt := range tezos.KeyTypes {
		ks, err := s.Generate(ctx, "cs", kt, 2)
		require.NoError(t, err)
		require.Len(t, ks, 2)
		keys = append(keys, ks...)
	}
	assert.Len(t, s.List(), 8)
	assert.Len(t, st.keys, 8)
	for _, k := range keys {
		sig, err := s.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: msg})
		require.NoError(t, err)
		require.NoError(t, k.PublicKey.Verify(msg, sig, tezos.SignVersion2), k.PKH.String())
	}

	// A new service over the same storage and enclave finds every key.
	s2 := vaultService(t, enc, st, signer.Options{LoadConcurrency: 3, DefaultPolicy: signer.AllowAll()})
	require.NoError(t, s2.Load(ctx))
	assert.Equal(t, s.List(), s2.List())
}

func TestSignErrors(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newService(t)
	ks, err := s.Generate(ctx, "", tezos.BLS, 1)
	require.NoError(t, err)
	pkh := ks[0].PKH.String()

	_, err = s.Sign(ctx, signer.SignRequest{PKH: "tz1notanaddress", Message: transaction})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	_, err = s.Sign(ctx, signer.SignRequest{PKH: "tz1burnburnburnburnburnburnburjAYjjX", Message: transaction})
	assert.Equal(t, domain.KindNotFound, domain.KindOf(err))
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	v0 := uint8(0)
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: transaction, Version: &v0})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	assert.ErrorContains(t, err, "signing version 0")

	v1 := uint8(1)
	sig, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: transaction, Version: &v1})
	require.NoError(t, err)
	require.NoError(t, ks[0].PublicKey.Verify(transaction, sig, 1))
	require.Error(t, ks[0].PublicKey.Verify(transaction, sig, 2))

	pop, err := s.ProvePossession(ctx, signer.PossessionRequest{PKH: pkh})
	require.NoError(t, err)
	require.NoError(t, ks[0].PublicKey.VerifyPossession(pop))

	ed, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	_, err = s.ProvePossession(ctx, signer.PossessionRequest{PKH: ed[0].PKH.String()})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

func TestStorageFailureLeavesNoKey(t *testing.T) {
	ctx := context.Background()
	s, _, st := newService(t)
	st.fail = errors.New("disk full")
	_, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.ErrorContains(t, err, "disk full")
	assert.Empty(t, s.List(), "a key that was not stored must not be usable")

	sk, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	require.NoError(t, err)
	_, err = s.Import(ctx, "cs", sk)
	require.Error(t, err)
	assert.Empty(t, s.List())
	assert.Equal(t, make([]byte, 32), sk.Bytes, "Import zeroes the caller's secret")
}

func TestImportAndUnknownVault(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newService(t)
	sk, err := tezos.GeneratePrivateKey(tezos.P256, nil)
	require.NoError(t, err)
	want, _ := sk.Public()
	k, err := s.Import(ctx, "cs", sk)
	require.NoError(t, err)
	assert.True(t, k.PublicKey.Equal(want))

	_, err = s.Generate(ctx, "nope", tezos.Ed25519, 1)
	assert.Equal(t, domain.KindNotFound, domain.KindOf(err))
	_, err = s.Generate(ctx, "cs", tezos.Ed25519, 0)
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

func TestLoadRejectsMismatchedEntry(t *testing.T) {
	ctx := context.Background()
	s, enc, st := newService(t)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 2)
	require.NoError(t, err)
	// Swap the blobs: each entry now opens as the other key.
	st.keys[0].Blob, st.keys[1].Blob = st.keys[1].Blob, st.keys[0].Blob
	s2 := vaultService(t, enc, st, signer.Options{})
	err = s2.Load(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not match")
	_ = ks
}

func TestStartLoadingWaitsForEnclave(t *testing.T) {
	ctx := context.Background()
	s, enc, st := newService(t)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	pkh := ks[0].PKH.String()

	s2 := vaultService(t, enc, st, signer.Options{DefaultPolicy: signer.AllowAll()})
	enc.mu.Lock()
	enc.fail = errors.New("enclave unreachable")
	enc.mu.Unlock()
	s2.StartLoading(ctx, 10*time.Millisecond, time.Second)
	require.Eventually(t, func() bool { return s2.Ready() != nil && strings.Contains(s2.Ready().Error(), "unreachable") }, time.Second, 5*time.Millisecond)
	_, err = s2.Key(pkh)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err), "not loaded yet is unavailable, not not-found")

	enc.mu.Lock()
	enc.fail = nil
	enc.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	require.NoError(t, s2.WaitLoaded(wctx))
	require.NoError(t, s2.Ready())
	_, err = s2.Key(pkh)
	require.NoError(t, err)
	_, err = s2.Key("tz1burnburnburnburnburnburnburjAYjjX")
	assert.Equal(t, domain.KindNotFound, domain.KindOf(err))
}

func TestConsensusKeys(t *testing.T) {
	ctx := context.Background()
	enc, st := newFakeEnclave(), &memStore{}
	probe := vaultService(t, enc, st, signer.Options{DefaultPolicy: signer.AllowAll()})
	ks, err := probe.Generate(ctx, "cs", tezos.Ed25519, 4)
	require.NoError(t, err)
	pols := map[string]*signer.Policy{
		ks[0].Address: signer.DefaultKeyPolicy(),                                               // block, preattestation, attestation
		ks[1].Address: {Allow: map[string][]string{"generic": {"transaction"}}},                // no consensus
		ks[2].Address: {Allow: map[string][]string{"attestation": nil, "generic": {"reveal"}}}, // attestations only
		// ks[3] has no policy: it cannot sign at all.
	}
	s := vaultService(t, enc, st, signer.Options{Policies: pols})
	require.NoError(t, s.Load(ctx))
	require.ElementsMatch(t, []string{ks[0].Address, ks[2].Address}, s.ConsensusKeys())
}

// progressLog records progress reports.
type progressLog struct {
	mu    sync.Mutex
	tasks map[string]*[2]int // what → total, done
	ended map[string]bool
}

func (p *progressLog) Begin(what string, total int) ports.ProgressTask {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tasks == nil {
		p.tasks, p.ended = map[string]*[2]int{}, map[string]bool{}
	}
	p.tasks[what] = &[2]int{total, 0}
	return progressTask{p, what}
}

type progressTask struct {
	p    *progressLog
	what string
}

func (t progressTask) Add(n int) { t.p.mu.Lock(); t.p.tasks[t.what][1] += n; t.p.mu.Unlock() }
func (t progressTask) Done()     { t.p.mu.Lock(); t.p.ended[t.what] = true; t.p.mu.Unlock() }

func TestLoadAndGenerateReportProgress(t *testing.T) {
	ctx := context.Background()
	enc, st := newFakeEnclave(), &memStore{}
	var p progressLog
	s := vaultService(t, enc, st, signer.Options{DefaultPolicy: signer.AllowAll(), Progress: &p})
	_, err := s.Generate(ctx, "cs", tezos.Ed25519, 7)
	require.NoError(t, err)
	_, err = s.Generate(ctx, "cs", tezos.Ed25519, 1) // one key: no task
	require.NoError(t, err)
	require.Equal(t, map[string]*[2]int{"generating ed25519 keys in vault cs": {7, 7}}, p.tasks)

	s2 := vaultService(t, enc, st, signer.Options{DefaultPolicy: signer.AllowAll(), Progress: &p})
	require.NoError(t, s2.Load(ctx))
	require.Equal(t, [2]int{8, 8}, *p.tasks["loading keys into vault cs"])
	require.True(t, p.ended["loading keys into vault cs"] && p.ended["generating ed25519 keys in vault cs"])
}

// A key held by two vaults (the same sealed key stored twice, or the same
// plain key imported into two in-process vaults) was taken silently, the
// last vault loaded winning; loading now refuses, naming both vaults.
func TestLoadRefusesAKeyInTwoVaults(t *testing.T) {
	ctx := context.Background()
	s, enc, st := newService(t)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	copyStore := &memStore{keys: append([]ports.StoredKey(nil), st.keys...)}
	s2, err := signer.New([]signer.Vault{{Name: "a", Enclave: enc, Store: st}, {Name: "b", Enclave: enc, Store: copyStore}}, signer.Options{})
	require.NoError(t, err)
	err = s2.Load(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `key `+ks[0].Address+` is in vault "a" and in vault "b"`)
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}
