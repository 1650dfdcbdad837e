package signer_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

func TestJWTUsers(t *testing.T) {
	ctx := context.Background()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, nil)
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 2)
	require.NoError(t, err)
	restricted, open := ks[0].PKH.String(), ks[1].PKH.String()
	allow := map[string][]string{"generic": {"transaction"}}
	pols[restricted] = &signer.Policy{Allow: allow, JWTUsers: []string{"alice", "bob"}}
	pols[open] = &signer.Policy{Allow: allow}

	// No user at all: 401, the key needs one of its users.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: restricted, Message: transaction})
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err))
	assert.ErrorContains(t, err, "jwt_users")

	// Another (authenticated) user: 403 naming the user.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: restricted, Message: transaction, User: "mallory"})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, `"mallory"`)

	// A listed user signs; the signature verifies.
	sig, err := s.Sign(ctx, signer.SignRequest{PKH: restricted, Message: transaction, User: "bob"})
	require.NoError(t, err)
	require.NoError(t, ks[0].PublicKey.Verify(transaction, sig, 2))

	// A key without jwt_users accepts any user and none.
	for _, u := range []string{"", "mallory"} {
		_, err = s.Sign(ctx, signer.SignRequest{PKH: open, Message: transaction, User: u})
		require.NoError(t, err, "user %q", u)
	}

	// jwt_users is checked before the policy: a listed user still gets
	// the policy's refusal for what it does not allow.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: restricted, Message: attestation(1, 0, 1), User: "alice"})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, "not allowed")
}

func TestJWTUsersAndAuthorizedKeysBothApply(t *testing.T) {
	ctx := context.Background()
	client, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	clientPK, _ := client.Public()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, []tezos.PublicKey{clientPK})
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	k := ks[0]
	pols[k.PKH.String()] = &signer.Policy{Allow: map[string][]string{"generic": {"transaction"}}, JWTUsers: []string{"alice"}}
	auth, err := client.Sign(signer.AuthenticationData(k.PKH, transaction), 2)
	require.NoError(t, err)

	// The right user without the client signature: refused.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, User: "alice"})
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err))
	// The client signature without the right user: refused.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: auth.String(), User: "bob"})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	_, err = s.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: auth.String()})
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err))
	// Both: signed.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: k.PKH.String(), Message: transaction, Authentication: auth.String(), User: "alice"})
	require.NoError(t, err)
}

// fakeHook records what it is asked and answers with err.
type fakeHook struct {
	mu   sync.Mutex
	reqs []ports.HookRequest
	err  error
}

func (h *fakeHook) Approve(_ context.Context, r ports.HookRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = append(h.reqs, r)
	return h.err
}

func (h *fakeHook) calls() []ports.HookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ports.HookRequest(nil), h.reqs...)
}

func TestPolicyHookOrder(t *testing.T) {
	ctx := context.Background()
	client, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	require.NoError(t, err)
	clientPK, _ := client.Public()
	hook := &fakeHook{}
	wm := mem.New(mem.Config{})
	enc := newFakeEnclave()
	pols := map[string]*signer.Policy{}
	s := vaultService(t, enc, &memStore{}, signer.Options{Policies: pols, AuthorizedKeys: []tezos.PublicKey{clientPK}, Watermarks: wm, PolicyHook: hook})
	ks, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	k := ks[0]
	pkh := k.PKH.String()
	pols[pkh] = &signer.Policy{Allow: map[string][]string{"attestation": nil, "generic": {"delegation"}}}
	authFor := func(msg []byte) string {
		sig, err := client.Sign(signer.AuthenticationData(k.PKH, msg), 2)
		require.NoError(t, err)
		return sig.String()
	}

	// Refused by the policy or by authentication: the hook is not asked.
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: transaction, Authentication: authFor(transaction)})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: attestation(5, 0, 1)})
	assert.Equal(t, domain.KindUnauthorized, domain.KindOf(err))
	assert.Empty(t, hook.calls(), "the hook sees only what the policy allows")

	// Allowed: the hook gets the message, source, key and client key hash.
	msg := attestation(5, 0, 1)
	sig, err := s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: msg, Authentication: authFor(msg), Source: "192.0.2.7"})
	require.NoError(t, err)
	require.NoError(t, k.PublicKey.Verify(msg, sig, 2))
	calls := hook.calls()
	require.Len(t, calls, 1)
	assert.Equal(t, msg, calls[0].Message)
	assert.Equal(t, "192.0.2.7", calls[0].Source)
	assert.Equal(t, k.PKH, calls[0].PKH)
	assert.Equal(t, clientPK.Hash(), calls[0].ClientKeyHash)

	// The hook refuses: the error comes back as is, the watermark does not
	// move and the enclave is not asked (it no longer holds the key).
	hook.err = domain.Errorf(domain.KindForbidden, "policy hook: no")
	enc.mu.Lock()
	delete(enc.loaded, k.PKH)
	enc.mu.Unlock()
	next := attestation(6, 0, 1)
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: next, Authentication: authFor(next)})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, "policy hook: no")
	recs, err := wm.Export(ctx)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, int32(5), recs[0].Mark.Level, "a refused request must not raise the watermark")

	// A hook failure that is not a refusal is still no signature.
	hook.err = domain.Errorf(domain.KindInternal, "policy hook unreachable")
	_, err = s.Sign(ctx, signer.SignRequest{PKH: pkh, Message: next, Authentication: authFor(next)})
	require.Error(t, err)
	assert.Len(t, hook.calls(), 3)
}
