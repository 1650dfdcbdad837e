package signer

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/suggest"
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
	for _, k := range []string{string(request.KindBlock), request.OpPreattestation, request.OpAttestation, request.OpAttestationWithDAL} {
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

// legacyKind maps older request kind names to current ones: Signatory's
// ("Both terminologies work identically", its documentation) and Sigil's
// earlier name of the packed data request.
var legacyKind = map[string]string{
	"endorsement":    request.OpAttestation,
	"preendorsement": request.OpPreattestation,
	"micheline":      string(request.KindPack),
}

// legacyOp maps older operation kind names to current ones.
var legacyOp = map[string]string{
	"endorsement":    "attestation",
	"preendorsement": "preattestation",
}

// unmatchedKinds are request kind names Signatory's examples list that no
// current request has (a failing_noop is a generic operation; allow it
// under generic). Accepted with a warning; they match nothing.
var unmatchedKinds = map[string]bool{"failing_noop": true}

// retiredOps are operation kinds of earlier protocols that Signatory
// configurations still list. They are accepted (with a warning) and match
// nothing: no current request carries them.
var retiredOps = map[string]bool{
	"endorsement_with_slot": true, "double_endorsement_evidence": true, "double_preendorsement_evidence": true,
	"double_attestation_evidence": true, "double_preattestation_evidence": true,
	"tx_rollup_origination": true, "tx_rollup_submit_batch": true, "tx_rollup_commit": true,
	"tx_rollup_return_bond": true, "tx_rollup_finalize_commitment": true, "tx_rollup_remove_commitment": true,
	"tx_rollup_rejection": true, "tx_rollup_dispatch_tickets": true,
	"sc_rollup_originate": true, "sc_rollup_add_messages": true, "sc_rollup_cement": true, "sc_rollup_publish": true,
	"sc_rollup_refute": true, "sc_rollup_timeout": true, "sc_rollup_execute_outbox_message": true,
	"sc_rollup_recover_bond": true, "sc_rollup_dal_slot_subscribe": true, "dal_slot_availability": true,
	"dal_attestation": true,
}

// OpSignaturePrefix is gotez's operation kind of tag 255: the first bytes of
// a BLS signature carried at the end of a signed operation. Signatory lists
// it among the operation kinds (its policy may name it); Sigil accepts the
// name and matches nothing with it, because it refuses every request that
// carries one (an unsigned operation never does).
const OpSignaturePrefix = "signature_prefix"

// PolicyOperationKinds lists, sorted, every operation kind a policy's
// generic list may name that Signatory's `list-ops` prints (gotez's
// generic operations and staking pseudo-operations of the current
// protocol), plus the consensus operations Sigil also signs inside a
// generic request (attestation, attestation_with_dal, preattestation). A
// ballot may also be named with its vote (ballot:yay, ballot:nay,
// ballot:pass), which list-ops does not print, as in Signatory.
func PolicyOperationKinds() []string {
	out := append(request.GenericOperationKinds(), OpSignaturePrefix)
	slices.Sort(out)
	return out
}

// ballotOp checks an operation name with a sub-kind (Signatory's
// base:sub form, which only ballot takes, with a vote).
func ballotOp(op string) (bool, string) {
	base, vote, ok := strings.Cut(op, ":")
	if !ok {
		return false, ""
	}
	if base != request.OpBallot || !slices.Contains(request.BallotVotes, vote) {
		hint := ""
		if base == request.OpBallot {
			if s := suggest.For(vote, request.BallotVotes); len(s) > 0 {
				hint = " (did you mean ballot:" + s[0] + "?)"
			}
		}
		return true, fmt.Sprintf("invalid operation kind %s%s: only ballot takes a sub-kind, its vote (ballot:%s)",
			domain.EchoName(op), hint, strings.Join(request.BallotVotes, ", ballot:"))
	}
	return true, ""
}

// ballotNames are ballot's names with a vote (ballot:yay, …).
func ballotNames() []string {
	out := make([]string, len(request.BallotVotes))
	for i, v := range request.BallotVotes {
		out[i] = request.OpBallot + ":" + v
	}
	return out
}

// PolicyError is a problem with one name of a key's policy. Field says
// where, relative to the key's entry, as the configuration spells it:
// allow.attestaton (a request kind), allow.generic[2] (an operation kind),
// allowed_operations[0], allowed_kinds[1].
type PolicyError struct {
	Field string
	Msg   string
}

func (e *PolicyError) Error() string { return e.Field + ": " + e.Msg }

// NormalizePolicy checks a policy's kind names and folds Signatory's older
// spellings into Allow, returning warnings to log. As in Signatory, `allow`
// wins: the older allowed_operations / allowed_kinds are read only when
// allow is absent. Unknown names are errors (Signatory ignores them): a typo
// must not silently refuse, or allow, what was meant. Names of operations
// from earlier protocols are accepted with a warning and match nothing.
func NormalizePolicy(allow map[string][]string, allowedOperations, allowedKinds []string) (map[string][]string, []string, error) {
	out := map[string][]string{}
	var warnings []string
	known := request.GenericOperationKinds()
	// kindField is where a request kind is named; opsField where its
	// operation kinds are listed.
	add := func(kind, kindField, opsField string, ops []string) error {
		if k, ok := legacyKind[kind]; ok {
			kind = k
		}
		if unmatchedKinds[kind] {
			warnings = append(warnings, fmt.Sprintf("request kind %q matches no request (a %s is a generic operation: list it under generic)", kind, kind))
			return nil
		}
		if !slices.Contains(request.RequestKinds(), kind) {
			names := append(request.RequestKinds(), slices.Sorted(maps.Keys(legacyKind))...)
			return &PolicyError{Field: kindField, Msg: fmt.Sprintf("unknown request kind %s%s", domain.EchoName(kind),
				suggest.Hint(kind, names, "want "+strings.Join(request.RequestKinds(), ", ")+"; older names endorsement, preendorsement, micheline"))}
		}
		cur, seen := out[kind]
		if !seen {
			cur = []string{}
		}
		for i, op := range ops {
			field := fmt.Sprintf("%s[%d]", opsField, i)
			if o, ok := legacyOp[op]; ok {
				op = o
			}
			sub, msg := ballotOp(op)
			switch {
			case msg != "":
				return &PolicyError{Field: field, Msg: msg}
			case sub, slices.Contains(known, op):
			case op == OpSignaturePrefix:
				warnings = append(warnings, fmt.Sprintf("operation kind %q in %s matches nothing: Sigil refuses every request carrying a signature prefix (it ends a signed operation, never an unsigned one)", op, kind))
			case retiredOps[op]:
				warnings = append(warnings, fmt.Sprintf("operation kind %q in %s belongs to an earlier protocol and matches nothing", op, kind))
			default:
				names := slices.Concat(known, ballotNames(), slices.Sorted(maps.Keys(legacyOp)), []string{OpSignaturePrefix})
				return &PolicyError{Field: field, Msg: fmt.Sprintf("unknown operation kind %s in %s%s", domain.EchoName(op), kind,
					suggest.Hint(op, names, "known: "+strings.Join(known, ", ")+", and ballot:yay, ballot:nay, ballot:pass; see `sigil list-ops`"))}
			}
			if !slices.Contains(cur, op) {
				cur = append(cur, op)
			}
		}
		out[kind] = cur
		return nil
	}
	if allow != nil {
		if len(allowedOperations) > 0 || len(allowedKinds) > 0 {
			warnings = append(warnings, "allowed_operations and allowed_kinds are ignored because allow is set (as Signatory does)")
		}
		for _, kind := range slices.Sorted(maps.Keys(allow)) {
			if err := add(kind, "allow."+kind, "allow."+kind, allow[kind]); err != nil {
				return nil, nil, err
			}
		}
		return out, warnings, nil
	}
	for i, kind := range allowedOperations {
		if err := add(kind, fmt.Sprintf("allowed_operations[%d]", i), "", nil); err != nil {
			return nil, nil, err
		}
	}
	if len(allowedKinds) > 0 {
		if !slices.Contains(allowedOperations, "generic") {
			warnings = append(warnings, "allowed_kinds has no effect without generic in allowed_operations")
		} else if err := add("generic", "allowed_operations", "allowed_kinds", allowedKinds); err != nil {
			return nil, nil, err
		}
	}
	if len(allowedOperations) > 0 || len(allowedKinds) > 0 {
		warnings = append(warnings, "allowed_operations and allowed_kinds are deprecated: use allow")
	}
	return out, warnings, nil
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
	if len(pol.AllowedChains) > 0 && r.HasWatermark() {
		if id := r.ChainID.String(); !slices.Contains(pol.AllowedChains, id) {
			return client, domain.Errorf(domain.KindForbidden, "chain %s is not allowed for %s (allowed_chains: %s)", id, k.Address, strings.Join(pol.AllowedChains, ", "))
		}
	}
	client, err := s.authorizeClient(st, k, pol, req.Authentication, req.Message, client)
	if err != nil {
		s.observePolicy(k.Address, ports.ViolationAuthentication)
		return client, err
	}
	kind := r.PolicyKind()
	ops, ok := pol.Allow[kind]
	if !ok {
		s.observePolicy(k.Address, kind)
		return client, domain.Errorf(domain.KindForbidden, "request kind %q is not allowed for %s", kind, k.Address)
	}
	if r.Kind == request.KindGeneric {
		for i, op := range r.Ops {
			// A ballot is allowed by `ballot` or by `ballot:<its vote>`
			// (Signatory's matchFilter).
			name := r.PolicyOp(i)
			if !slices.Contains(ops, op) && !slices.Contains(ops, name) {
				s.observePolicy(k.Address, name)
				return client, domain.Errorf(domain.KindForbidden, "operation %q is not allowed for %s", name, k.Address)
			}
		}
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
