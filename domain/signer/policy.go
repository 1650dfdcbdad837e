package signer

import (
	"bytes"
	"slices"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/policy"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Policy is what one key may sign, as Signatory's `tezos:` section says.
type Policy struct {
	// Allow maps a request kind (block, preattestation, attestation,
	// attestation_with_dal, generic, pack) to the operation kinds
	// allowed in it; only the generic list is consulted, an empty list
	// allows no generic operation.
	Allow map[string][]string
	// AllowedChains, when non-empty, are the base58 chain ids a consensus
	// request may be for.
	AllowedChains []string
	// LogPayloads logs the hex of every signed message.
	LogPayloads bool
	// AuthorizedKeys, when non-empty, are the only client keys that may ask
	// this key to sign. With server-wide authorized keys also set, a
	// client must be in both lists (as Signatory applies them).
	AuthorizedKeys []tezos.PublicKey
	// AllowProofOfPossession allows GET /bls_prove_possession for this key.
	AllowProofOfPossession bool
	// JWTUsers, when non-empty, are the only JWT users that may ask this
	// key to sign; a request no user authenticated is then refused.
	JWTUsers []string
}

// DefaultKeyPolicy is the policy of a key listed with an empty entry
// (`tz1…:` and nothing under it): consensus signing only, as Signatory's
// default: block, preattestation and attestation.
func DefaultKeyPolicy() *Policy {
	return &Policy{Allow: map[string][]string{
		string(request.KindBlock): nil, request.OpPreattestation: nil, request.OpAttestation: nil,
	}}
}

// allowsConsensus reports whether p allows any consensus request kind.
func (p *Policy) allowsConsensus() bool {
	for _, k := range policy.ConsensusKinds {
		if _, ok := p.Allow[k]; ok {
			return true
		}
	}
	return false
}

// AllowAll returns a policy allowing every request and operation kind and
// proofs of possession (development only).
func AllowAll() *Policy {
	allow := map[string][]string{}
	for _, k := range request.RequestKinds() {
		allow[k] = nil
	}
	allow[string(request.KindGeneric)] = request.GenericOperationKinds()
	return &Policy{Allow: allow, AllowProofOfPossession: true}
}

// OpSignaturePrefix is gotez's operation kind of tag 255 (policy.OpSignaturePrefix).
const OpSignaturePrefix = policy.OpSignaturePrefix

// PolicyOperationKinds lists, sorted, every operation kind a policy's
// generic list may name (policy.OperationKinds).
func PolicyOperationKinds() []string { return policy.OperationKinds() }

// PolicyError is a problem with one name of a key's policy (policy.Error).
type PolicyError = policy.Error

// NormalizePolicy checks a policy's kind names and folds Signatory's older
// spellings into Allow, returning warnings to log (policy.Normalize).
func NormalizePolicy(allow map[string][]string, allowedOperations, allowedKinds []string) (map[string][]string, []string, error) {
	return policy.Normalize(allow, allowedOperations, allowedKinds)
}

// checkPolicy applies the key's policy in the order of Signatory's
// matchFilter: allowed_chains, the key's authorized_keys, the request kind,
// then each operation of a generic request. Refusals are KindForbidden
// (or the authentication errors of authorizeClient), and all but the
// chain are counted as policy violations with Signatory's
// violation_type: "authentication", the request kind, or the operation
// (ballot:<vote> for a ballot). It returns the client that the key's own
// list authenticated, if it did.
func (s *Service) checkPolicy(st *state, k Key, pol *Policy, r *request.Request, req SignRequest, client tezos.PublicKeyHash) (tezos.PublicKeyHash, error) {
	if err := policy.CheckChain(pol.AllowedChains, r, k.Address); err != nil {
		return client, err
	}
	client, err := s.authorizeClient(st, k, pol, req.Authentication, req.Message, client)
	if err != nil {
		s.observePolicy(k.Address, ports.ViolationAuthentication)
		return client, err
	}
	if violation, err := policy.Check(pol.Allow, r, k.Address); err != nil {
		s.observePolicy(k.Address, violation)
		return client, err
	}
	return client, nil
}

// checkUser enforces the key's jwt_users: with a list, the request must
// come from a JWT-authenticated user (else KindUnauthorized) who is in it
// (else KindForbidden). Without a list, any user or none may ask.
func (p *Policy) checkUser(pkh, user string) error {
	if p == nil || len(p.JWTUsers) == 0 {
		return nil
	}
	if user == "" {
		return domain.Errorf(domain.KindUnauthorized, "%s may only be used by its jwt_users: log in (POST /login) and send the token as Authorization: Bearer with the username header", pkh)
	}
	if !slices.Contains(p.JWTUsers, user) {
		return domain.Errorf(domain.KindForbidden, "user %q is not allowed to use %s (not in its jwt_users)", domain.Echo(user), pkh)
	}
	return nil
}

// authData is what a client signs to authenticate a sign request:
// 0x04 0x01 ‖ tagged key hash (21 bytes) ‖ message (Signatory's format).
func authData(pkh tezos.PublicKeyHash, msg []byte) []byte {
	var b bytes.Buffer
	b.Grow(2 + 21 + len(msg))
	b.Write([]byte{0x04, 0x01})
	b.Write(pkh.Tagged())
	b.Write(msg)
	return b.Bytes()
}

// AuthenticationData returns the bytes a client signs for the
// `authentication` query parameter of a request to sign msg with pkh.
func AuthenticationData(pkh tezos.PublicKeyHash, msg []byte) []byte { return authData(pkh, msg) }
