package signer_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

var (
	allowTx   = &signer.Policy{Allow: map[string][]string{"generic": {"transaction"}}}
	consensus = signer.DefaultKeyPolicy()
)

// reloadFixture is a service over one vault with key a (allowed to sign
// transactions) loaded, and a second key b stored in the same enclave and
// storage after the service started.
func reloadFixture(t *testing.T) (s *signer.Service, enc *fakeEnclave, st *memStore, a, b signer.Key) {
	t.Helper()
	ctx := context.Background()
	enc, st = newFakeEnclave(), &memStore{}
	probe := vaultService(t, enc, st, signer.Options{})
	ks, err := probe.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	a = ks[0]
	s = vaultService(t, enc, st, signer.Options{Policies: map[string]*signer.Policy{a.Address: allowTx}, Watermarks: mem.New(mem.Config{})})
	require.NoError(t, s.Load(ctx))
	ks, err = probe.Generate(ctx, "cs", tezos.Secp256k1, 1)
	require.NoError(t, err)
	return s, enc, st, a, ks[0]
}

func TestReloadAddsKeysAndChangesPolicies(t *testing.T) {
	ctx := context.Background()
	s, _, _, a, b := reloadFixture(t)
	_, err := s.Key(b.Address)
	require.Equal(t, domain.KindNotFound, domain.KindOf(err), "a key stored after the start is not served before a reload")
	before := s.Snapshot()

	var committed []signer.Snapshot
	res, err := s.Reload(ctx, &signer.Settings{Policies: map[string]*signer.Policy{a.Address: consensus, b.Address: allowTx}},
		func(v signer.Snapshot) { committed = append(committed, v) })
	require.NoError(t, err)
	assert.Equal(t, signer.ReloadResult{KeysBefore: 1, KeysAfter: 2, Added: []string{b.Address},
		PoliciesChanged: sorted(a.Address, b.Address)}, res)
	require.Len(t, committed, 1)
	assert.Equal(t, 2, committed[0].Count())

	// The new key signs under its new policy; a no longer may sign
	// transactions.
	sig, err := s.Sign(ctx, signer.SignRequest{PKH: b.Address, Message: transaction})
	require.NoError(t, err)
	require.NoError(t, b.PublicKey.Verify(transaction, sig, tezos.SignVersion2))
	_, err = s.Sign(ctx, signer.SignRequest{PKH: a.Address, Message: transaction})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ElementsMatch(t, []string{a.Address}, s.ConsensusKeys())

	// A snapshot taken before the reload still decides as the old
	// configuration did: a request that started on it finishes on it.
	sig, err = before.Sign(ctx, signer.SignRequest{PKH: a.Address, Message: transaction})
	require.NoError(t, err)
	require.NoError(t, a.PublicKey.Verify(transaction, sig, tezos.SignVersion2))
	_, err = before.Key(b.Address)
	assert.Equal(t, domain.KindNotFound, domain.KindOf(err))

	// Reloading the same again changes nothing.
	res, err = s.Reload(ctx, &signer.Settings{Policies: map[string]*signer.Policy{a.Address: signer.DefaultKeyPolicy(), b.Address: allowTx}}, nil)
	require.NoError(t, err)
	assert.Equal(t, signer.ReloadResult{KeysBefore: 2, KeysAfter: 2}, res)
}

func sorted(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}

// removeStored deletes addr's entry from st.
func removeStored(st *memStore, addr string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, k := range st.keys {
		if k.PKH == addr {
			st.keys = append(st.keys[:i:i], st.keys[i+1:]...)
			return
		}
	}
}

func TestReloadDropsOnlyKeysWithoutPolicy(t *testing.T) {
	ctx := context.Background()
	s, _, st, a, b := reloadFixture(t)
	both := map[string]*signer.Policy{a.Address: allowTx, b.Address: allowTx}
	_, err := s.Reload(ctx, &signer.Settings{Policies: both}, nil)
	require.NoError(t, err)

	// b disappears from the storage while its policy is still there: the
	// reload is refused, nothing changes.
	removeStored(st, b.Address)
	_, err = s.Reload(ctx, &signer.Settings{Policies: map[string]*signer.Policy{a.Address: consensus, b.Address: allowTx}}, nil)
	require.ErrorIs(t, err, signer.ErrReloadRefused)
	assert.ErrorContains(t, err, b.Address+" (vault cs)")
	assert.Equal(t, 2, s.Count())
	_, err = s.Sign(ctx, signer.SignRequest{PKH: a.Address, Message: transaction})
	require.NoError(t, err, "the old policy is still in force")

	// With its policy removed too, b is dropped.
	res, err := s.Reload(ctx, &signer.Settings{Policies: map[string]*signer.Policy{a.Address: allowTx}}, nil)
	require.NoError(t, err)
	assert.Equal(t, signer.ReloadResult{KeysBefore: 2, KeysAfter: 1, Removed: []string{b.Address}, PoliciesChanged: []string{b.Address}}, res)
	_, err = s.Key(b.Address)
	assert.Equal(t, domain.KindNotFound, domain.KindOf(err))
}

func TestReloadFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	s, enc, st, a, b := reloadFixture(t)
	newPols := &signer.Settings{Policies: map[string]*signer.Policy{a.Address: consensus, b.Address: allowTx}}

	for name, breakIt := range map[string]func(bool){
		"the enclave cannot load the new key": func(on bool) {
			enc.mu.Lock()
			defer enc.mu.Unlock()
			enc.fail = map[bool]error{true: errors.New("enclave unreachable")}[on]
		},
		"the storage cannot be listed": func(on bool) {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.listFail = map[bool]error{true: errors.New("storage unreachable")}[on]
		},
	} {
		t.Run(name, func(t *testing.T) {
			breakIt(true)
			defer breakIt(false)
			called := false
			_, err := s.Reload(ctx, newPols, func(signer.Snapshot) { called = true })
			require.ErrorContains(t, err, "unreachable")
			assert.NotErrorIs(t, err, signer.ErrReloadRefused, "a failing dependency is not a refusal")
			assert.False(t, called)
			assert.Equal(t, 1, s.Count())
			_, err = s.Sign(ctx, signer.SignRequest{PKH: a.Address, Message: transaction})
			require.NoError(t, err, "the old policy is still in force")
		})
	}
	_, err := s.Reload(ctx, newPols, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, s.Count())
}

func TestReloadWhileLoadingIsUnavailable(t *testing.T) {
	ctx := context.Background()
	_, enc, st, a, _ := reloadFixture(t)
	enc.mu.Lock()
	enc.fail = errors.New("enclave unreachable")
	enc.mu.Unlock()
	s := vaultService(t, enc, st, signer.Options{})
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.StartLoading(lctx, time.Hour, time.Second)
	_, err := s.Reload(ctx, &signer.Settings{Policies: map[string]*signer.Policy{a.Address: allowTx}}, nil)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	assert.ErrorContains(t, err, "/healthz")
}

// refreshingStore counts Refresh calls and fails them on demand.
type refreshingStore struct {
	*memStore
	calls atomic.Int32
	fail  error
}

func (r *refreshingStore) Refresh(context.Context) error {
	r.calls.Add(1)
	return r.fail
}

func TestReloadRefreshesStores(t *testing.T) {
	ctx := context.Background()
	enc := newFakeEnclave()
	st := &refreshingStore{memStore: &memStore{}}
	s, err := signer.New([]signer.Vault{{Name: "f", Enclave: enc, Store: st}}, signer.Options{})
	require.NoError(t, err)
	_, err = s.Reload(ctx, &signer.Settings{}, nil)
	require.NoError(t, err)
	assert.Equal(t, int32(1), st.calls.Load())
	st.fail = errors.New("key file is corrupt")
	_, err = s.Reload(ctx, &signer.Settings{}, nil)
	require.ErrorContains(t, err, "key file is corrupt")
	assert.ErrorContains(t, err, `vault "f"`)
}

// TestReloadIsAtomicForRequests hammers the service with requests while
// reloads switch between two configurations whose mix would answer
// differently from either: X requires client authentication and forbids
// transactions, Y requires none and allows them. An unauthenticated
// transaction is 401 under X and signed under Y; under X's keys with Y's
// policy it would be 401 too, but under Y's keys with X's policy it would
// be 403, which neither configuration answers.
func TestReloadIsAtomicForRequests(t *testing.T) {
	ctx := context.Background()
	s, _, _, a, _ := reloadFixture(t)
	client, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	clientPK, err := client.Public()
	require.NoError(t, err)
	x := &signer.Settings{Policies: map[string]*signer.Policy{a.Address: consensus}, AuthorizedKeys: []tezos.PublicKey{clientPK}}
	y := &signer.Settings{Policies: map[string]*signer.Policy{a.Address: allowTx}}

	var stop atomic.Bool
	var wg sync.WaitGroup
	counts := make([]map[string]int, 4)
	for w := range counts {
		counts[w] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_, err := s.Sign(ctx, signer.SignRequest{PKH: a.Address, Message: transaction})
				if err != nil {
					counts[w][domain.KindOf(err).String()]++
				} else {
					counts[w]["signed"]++
				}
			}
		}()
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	reloads := 0
	for time.Now().Before(deadline) || reloads < 50 {
		_, err := s.Reload(ctx, []*signer.Settings{x, y}[reloads%2], nil)
		require.NoError(t, err)
		reloads++
	}
	stop.Store(true)
	wg.Wait()
	total := map[string]int{}
	for _, c := range counts {
		for k, n := range c {
			total[k] += n
		}
	}
	t.Logf("%d reloads; answers: %v", reloads, total)
	assert.Zero(t, total[domain.KindForbidden.String()], "a request saw one configuration's keys with the other's policy")
	for k := range total {
		assert.Contains(t, []string{domain.KindUnauthorized.String(), "signed"}, k, "unexpected answer")
	}
	assert.NotZero(t, total["signed"])
	assert.NotZero(t, total[domain.KindUnauthorized.String()])
}

func TestPolicyEqual(t *testing.T) {
	pk := func() tezos.PublicKey {
		sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
		require.NoError(t, err)
		p, err := sk.Public()
		require.NoError(t, err)
		return p
	}
	k1, k2 := pk(), pk()
	base := func() *signer.Policy {
		return &signer.Policy{
			Allow:          map[string][]string{"generic": {"transaction", "reveal"}, "block": nil},
			AllowedChains:  []string{"NetXdQprcVkpaWU", "NetXnHfVqm9iesp"},
			AuthorizedKeys: []tezos.PublicKey{k1, k2},
			JWTUsers:       []string{"alice", "bob"},
		}
	}
	reordered := &signer.Policy{
		Allow:          map[string][]string{"block": {}, "generic": {"reveal", "transaction"}},
		AllowedChains:  []string{"NetXnHfVqm9iesp", "NetXdQprcVkpaWU"},
		AuthorizedKeys: []tezos.PublicKey{k2, k1},
		JWTUsers:       []string{"bob", "alice"},
	}
	assert.True(t, base().Equal(reordered), "the order of lists changes nothing")
	assert.True(t, (*signer.Policy)(nil).Equal(nil))
	assert.False(t, base().Equal(nil))

	// Every field of Policy counts: changing any one makes the policies
	// differ (a field added to Policy and forgotten in Equal fails here).
	typ := reflect.TypeOf(signer.Policy{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			p := base()
			v := reflect.ValueOf(p).Elem().Field(i)
			switch v.Kind() {
			case reflect.Bool:
				v.SetBool(!v.Bool())
			case reflect.Map:
				v.SetMapIndex(reflect.ValueOf("pack"), reflect.ValueOf([]string(nil)))
			case reflect.Slice:
				if f.Type.Elem() == reflect.TypeOf(tezos.PublicKey{}) {
					v.Set(reflect.ValueOf([]tezos.PublicKey{k1}))
				} else {
					v.Set(reflect.ValueOf([]string{"other"}))
				}
			default:
				t.Fatalf("field %s of kind %v: teach this test (and Policy.Equal) about it", f.Name, v.Kind())
			}
			assert.False(t, base().Equal(p), "a change of %s goes unnoticed", f.Name)
		})
	}
	// An operation added to an allowed kind is a change.
	p := base()
	p.Allow["generic"] = append(p.Allow["generic"], "delegation")
	assert.False(t, base().Equal(p))
}

func TestReloadAuth(t *testing.T) {
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	pk, err := sk.Public()
	require.NoError(t, err)
	other, err := tezos.GeneratePrivateKey(tezos.P256, nil)
	require.NoError(t, err)
	keys := []tezos.PublicKey{pk}
	now := time.Unix(1_800_000_000, 0)
	sign := func(k tezos.PrivateKey, msg []byte) string {
		sig, err := k.Sign(msg, tezos.SignVersion2)
		require.NoError(t, err)
		return sig.String()
	}
	ts := now.Unix()
	var a signer.ReloadAuth

	for _, c := range []struct {
		name string
		ts   int64
		auth string
		now  time.Time
		kind domain.Kind
	}{
		{"missing", ts, "", now, domain.KindUnauthorized},
		{"unreadable", ts, "edsigxyz", now, domain.KindInvalid},
		{"by another key", ts, sign(other, signer.ReloadMessage(ts)), now, domain.KindForbidden},
		{"of another timestamp", ts, sign(sk, signer.ReloadMessage(ts+1)), now, domain.KindForbidden},
		{"of Signatory's authentication message", ts, sign(sk, signer.AuthenticationData(pk.Hash(), signer.ReloadMessage(ts))), now, domain.KindForbidden},
		{"of the tag alone", ts, sign(sk, signer.ReloadMessage(ts)[:16]), now, domain.KindForbidden},
		// Time: a request presented just after the window closes, and
		// one from a clock too far ahead.
		{"older than the window", ts, sign(sk, signer.ReloadMessage(ts)), now.Add(signer.ReloadAuthWindow + time.Second), domain.KindUnauthorized},
		{"ahead of the window", ts, sign(sk, signer.ReloadMessage(ts)), now.Add(-signer.ReloadAuthWindow - time.Second), domain.KindUnauthorized},
		{"far ahead", 1 << 62, sign(sk, signer.ReloadMessage(1<<62)), now, domain.KindUnauthorized},
		{"far behind", -1 << 62, sign(sk, signer.ReloadMessage(-1<<62)), now, domain.KindUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Verify(keys, c.ts, c.auth, c.now)
			require.Error(t, err)
			assert.Equal(t, c.kind, domain.KindOf(err), "%v", err)
			assert.ErrorIs(t, err, signer.ErrAuthentication)
		})
	}

	// At the edge of the window it is accepted, once.
	good := sign(sk, signer.ReloadMessage(ts))
	who, err := a.Verify(keys, ts, good, now.Add(signer.ReloadAuthWindow))
	require.NoError(t, err)
	assert.Equal(t, pk.Hash(), who)
	_, err = a.Verify(keys, ts, good, now)
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err), "a replay is refused")
	assert.ErrorContains(t, err, "already used")
	_, err = a.Verify(keys, ts-1, sign(sk, signer.ReloadMessage(ts-1)), now)
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err), "an older timestamp is refused")
	_, err = a.Verify(keys, ts+1, sign(sk, signer.ReloadMessage(ts+1)), now.Add(-signer.ReloadAuthWindow+time.Second))
	require.NoError(t, err, "a later one is accepted")
}

func TestReloadMessageLayout(t *testing.T) {
	m := signer.ReloadMessage(0x0102030405060708)
	assert.Equal(t, []byte("\xffsigil:reload:v1"), m[:16])
	assert.Len(t, m, 24)
	assert.Equal(t, mustHex(signer.ReloadTagHex), m[:16])
	assert.Equal(t, []byte{1, 2, 3, 4, 5, 6, 7, 8}, m[16:])
}

// FuzzReloadMessageIsNoSignRequest: no reload message is ever a sign
// request Sigil would classify, nor Signatory's authentication message,
// and two timestamps never share a message.
func FuzzReloadMessageIsNoSignRequest(f *testing.F) {
	f.Add(int64(0), int64(1))
	f.Add(int64(1_800_000_000), int64(-1))
	f.Fuzz(func(t *testing.T, ts, other int64) {
		m := signer.ReloadMessage(ts)
		if _, err := request.Parse(m); err == nil {
			t.Fatalf("ReloadMessage(%d) parses as a sign request", ts)
		}
		if bytes.HasPrefix(m, []byte{0x04, 0x01}) {
			t.Fatalf("ReloadMessage(%d) has the prefix of Signatory's authentication message", ts)
		}
		if ts != other && bytes.Equal(m, signer.ReloadMessage(other)) {
			t.Fatalf("timestamps %d and %d share a message", ts, other)
		}
	})
}

// TestReloadRefusesKeyInTwoVaults: as at start, a key stored in two vaults
// is refused, naming both, and nothing changes.
func TestReloadRefusesKeyInTwoVaults(t *testing.T) {
	ctx := context.Background()
	enc := newFakeEnclave()
	st1, st2 := &memStore{}, &memStore{}
	probe, err := signer.New([]signer.Vault{{Name: "one", Enclave: enc, Store: st1}}, signer.Options{})
	require.NoError(t, err)
	ks, err := probe.Generate(ctx, "one", tezos.Ed25519, 1)
	require.NoError(t, err)
	s, err := signer.New([]signer.Vault{{Name: "one", Enclave: enc, Store: st1}, {Name: "two", Enclave: enc, Store: st2}}, signer.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Load(ctx))
	st2.keys = append(st2.keys, st1.keys...)
	_, err = s.Reload(ctx, &signer.Settings{}, nil)
	require.ErrorIs(t, err, signer.ErrReloadRefused)
	assert.ErrorContains(t, err, `key `+ks[0].Address+` is in vault "one" and in vault "two"`)
	assert.Equal(t, 1, s.Count())
}
