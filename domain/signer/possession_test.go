package signer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// TestProvePossessionChecks: a proof of possession is authenticated and
// checked as Signatory checks it (pkg/server blsProveHandler, then
// Signatory.ProvePossession): with server-wide authorized keys the client
// signs AuthenticationData(pkh, nil) (0x04 0x01 ‖ tagged key hash, no
// message) — missing 401, unreadable 400, from no authorized key 403, all
// before the key is even looked up; then the key must be listed, its
// jwt_users apply, it must be tz4 and allow proofs of possession; the
// policy hook is asked (message empty, the client's hash), and its refusal
// is counted as Signatory's "policy_hook" violation. The key's own
// authorized_keys do not apply, as in Signatory.
func TestProvePossessionChecks(t *testing.T) {
	ctx := context.Background()
	client, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	clientPK, _ := client.Public()
	stranger, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	strangerPK, _ := stranger.Public()
	hook := &fakeHook{}
	pols := map[string]*signer.Policy{}
	s := vaultService(t, newFakeEnclave(), &memStore{}, signer.Options{Policies: pols, AuthorizedKeys: []tezos.PublicKey{clientPK},
		Watermarks: mem.New(mem.Config{}), PolicyHook: hook})
	events := &eventLog{}
	s.SetObserver(events)
	bls, err := s.Generate(ctx, "cs", tezos.BLS, 4)
	require.NoError(t, err)
	ed, err := s.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	allowed, notAllowed, unlisted, users := bls[0], bls[1], bls[2], bls[3]
	pols[allowed.PKH.String()] = &signer.Policy{AllowProofOfPossession: true,
		AuthorizedKeys: []tezos.PublicKey{strangerPK}} // the key's own list: ignored for PoP
	pols[notAllowed.PKH.String()] = &signer.Policy{}
	pols[users.PKH.String()] = &signer.Policy{AllowProofOfPossession: true, JWTUsers: []string{"alice"}}
	pols[ed[0].PKH.String()] = &signer.Policy{AllowProofOfPossession: true}
	unknown := "tz4HVR6aty9KwsQFHh81C1G7gBdhxT8kuytm"
	unknownPKH, err := tezos.ParsePublicKeyHash(unknown)
	require.NoError(t, err)

	auth := func(by tezos.PrivateKey, pkh tezos.PublicKeyHash, msg []byte) string {
		sig, err := by.Sign(signer.AuthenticationData(pkh, msg), tezos.SignVersion2)
		require.NoError(t, err)
		return sig.String()
	}
	for _, c := range []struct {
		name     string
		req      signer.PossessionRequest
		kind     domain.Kind // 0: a proof
		authFail bool        // refused by the server-wide authorized keys
		hooked   bool        // the hook was asked
	}{
		{"no authentication", signer.PossessionRequest{PKH: allowed.PKH.String()}, domain.KindUnauthorized, true, false},
		{"garbage authentication", signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: "edsigGarbage"}, domain.KindInvalid, true, false},
		{"client not authorized", signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: auth(stranger, allowed.PKH, nil)}, domain.KindForbidden, true, false},
		{"signed over a message", signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: auth(client, allowed.PKH, []byte{3})}, domain.KindForbidden, true, false},
		{"signed for another key", signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: auth(client, notAllowed.PKH, nil)}, domain.KindForbidden, true, false},
		{"unknown key, unauthenticated", signer.PossessionRequest{PKH: unknown}, domain.KindUnauthorized, true, false},
		{"unknown key", signer.PossessionRequest{PKH: unknown, Authentication: auth(client, unknownPKH, nil)}, domain.KindNotFound, false, false},
		{"unlisted key", signer.PossessionRequest{PKH: unlisted.PKH.String(), Authentication: auth(client, unlisted.PKH, nil)}, domain.KindForbidden, false, false},
		{"not allowed", signer.PossessionRequest{PKH: notAllowed.PKH.String(), Authentication: auth(client, notAllowed.PKH, nil)}, domain.KindForbidden, false, false},
		{"not a tz4 key", signer.PossessionRequest{PKH: ed[0].PKH.String(), Authentication: auth(client, ed[0].PKH, nil)}, domain.KindInvalid, false, false},
		{"jwt user not listed", signer.PossessionRequest{PKH: users.PKH.String(), Authentication: auth(client, users.PKH, nil), User: "mallory"}, domain.KindForbidden, false, false},
		{"jwt user listed", signer.PossessionRequest{PKH: users.PKH.String(), Authentication: auth(client, users.PKH, nil), User: "alice"}, 0, false, true},
		{"authenticated", signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: auth(client, allowed.PKH, nil), Source: "192.0.2.9"}, 0, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(hook.calls())
			sig, err := s.ProvePossession(ctx, c.req)
			if c.kind != 0 {
				require.Error(t, err)
				assert.Equal(t, c.kind, domain.KindOf(err), err.Error())
				assert.Equal(t, c.authFail, errors.Is(err, signer.ErrAuthentication))
			} else {
				require.NoError(t, err)
				k, err := s.Key(c.req.PKH)
				require.NoError(t, err)
				require.NoError(t, k.PublicKey.VerifyPossession(sig))
			}
			calls := hook.calls()
			if !c.hooked {
				assert.Len(t, calls, before, "the hook is asked only once everything else allows it")
				return
			}
			require.Len(t, calls, before+1)
			last := calls[len(calls)-1]
			assert.Nil(t, last.Message, "a proof of possession has no message")
			assert.Equal(t, clientPK.Hash(), last.ClientKeyHash)
			assert.Equal(t, c.req.Source, last.Source)
		})
	}

	// The hook refuses: no proof, and Signatory's policy_hook violation.
	events.policy = nil
	hook.err = domain.Errorf(domain.KindForbidden, "policy hook: no")
	_, err = s.ProvePossession(ctx, signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: auth(client, allowed.PKH, nil)})
	assert.Equal(t, domain.KindForbidden, domain.KindOf(err))
	assert.ErrorContains(t, err, "policy hook: no")
	hook.err = domain.Errorf(domain.KindInternal, "policy hook: bad reply signature")
	_, err = s.ProvePossession(ctx, signer.PossessionRequest{PKH: allowed.PKH.String(), Authentication: auth(client, allowed.PKH, nil)})
	assert.Equal(t, domain.KindInternal, domain.KindOf(err))
	assert.Equal(t, []ports.PolicyEvent{{Address: allowed.PKH.String(), Violation: ports.ViolationPolicyHook},
		{Address: allowed.PKH.String(), Violation: ports.ViolationPolicyHook}}, events.policy)
}

// TestProvePossessionWithoutAuthorizedKeys: without server-wide authorized
// keys no authentication is read (garbage is ignored, as Signatory ignores
// it), and the key's own authorized_keys do not apply.
func TestProvePossessionWithoutAuthorizedKeys(t *testing.T) {
	ctx := context.Background()
	other, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	otherPK, _ := other.Public()
	pols := map[string]*signer.Policy{}
	s, _, _ := newPolicyService(t, pols, nil)
	ks, err := s.Generate(ctx, "cs", tezos.BLS, 1)
	require.NoError(t, err)
	pols[ks[0].PKH.String()] = &signer.Policy{AllowProofOfPossession: true, AuthorizedKeys: []tezos.PublicKey{otherPK}}
	for _, a := range []string{"", "garbage"} {
		sig, err := s.ProvePossession(ctx, signer.PossessionRequest{PKH: ks[0].PKH.String(), Authentication: a})
		require.NoError(t, err, "authentication %q", a)
		require.NoError(t, ks[0].PublicKey.VerifyPossession(sig))
	}
}

// TestSignAuthenticationOrder: with server-wide authorized keys the client
// is authenticated before the key is looked up (an unauthenticated client
// learns nothing about which keys exist), as Signatory's HTTP handler
// does; without them the authentication parameter is not read at all.
func TestSignAuthenticationOrder(t *testing.T) {
	ctx := context.Background()
	client, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	clientPK, _ := client.Public()
	unknown := "tz1burnburnburnburnburnburnburjAYjjX"
	unknownPKH, _ := tezos.ParsePublicKeyHash(unknown)
	good, _ := client.Sign(signer.AuthenticationData(unknownPKH, transaction), tezos.SignVersion2)

	withKeys, _, _ := newPolicyService(t, map[string]*signer.Policy{}, []tezos.PublicKey{clientPK})
	for _, c := range []struct {
		auth string
		want domain.Kind
	}{{"", domain.KindUnauthorized}, {"nonsense", domain.KindInvalid}, {good.String(), domain.KindNotFound}} {
		_, err := withKeys.Sign(ctx, signer.SignRequest{PKH: unknown, Message: transaction, Authentication: c.auth})
		assert.Equal(t, c.want, domain.KindOf(err), "authentication %q: %v", c.auth, err)
	}
	_, err := withKeys.Sign(ctx, signer.SignRequest{PKH: "tz1nonsense", Message: transaction})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "a malformed address is a 400 first")

	pols := map[string]*signer.Policy{}
	without, _, _ := newPolicyService(t, pols, nil)
	ks, err := without.Generate(ctx, "cs", tezos.Ed25519, 1)
	require.NoError(t, err)
	pols[ks[0].PKH.String()] = &signer.Policy{Allow: map[string][]string{"generic": {"transaction"}}}
	sig, err := without.Sign(ctx, signer.SignRequest{PKH: ks[0].PKH.String(), Message: transaction, Authentication: "nonsense"})
	require.NoError(t, err, "no authorized keys: the parameter is ignored")
	require.NoError(t, ks[0].PublicKey.Verify(transaction, sig, tezos.SignVersion2))
}
