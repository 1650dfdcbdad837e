// Package policy is the rule of what a key may sign, shared by the daemon's
// signing service (domain/signer, the `tezos:` section) and the enclave's
// guard (domain/guard): the names a policy may use (request kinds and
// operation kinds with Signatory's spellings, older names folded into the
// current ones, each ballot's vote), their normalisation with errors that
// name the field and suggest the closest known name, and the decision on a
// classified request (domain/request): its chain, its request kind, then
// each operation of a generic request, in the order of Signatory's
// matchFilter. It is pure: no I/O, no configuration format.
package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/suggest"
)

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

// OperationKinds lists, sorted, every operation kind a policy's generic list
// may name that Signatory's `list-ops` prints (gotez's generic operations
// and staking pseudo-operations of the current protocol), plus the
// consensus operations Sigil also signs inside a generic request
// (attestation, attestation_with_dal, preattestation). A ballot may also be
// named with its vote (ballot:yay, ballot:nay, ballot:pass), which list-ops
// does not print, as in Signatory.
func OperationKinds() []string {
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

// Error is a problem with one name of a key's policy. Field says where,
// relative to the key's entry, as the configuration spells it:
// allow.attestaton (a request kind), allow.generic[2] (an operation kind),
// allowed_operations[0], allowed_kinds[1].
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// Normalize checks a policy's kind names and folds Signatory's older
// spellings into one allow map (request kind → the operation kinds allowed
// in it), returning warnings to log. As in Signatory, `allow` wins: the
// older allowed_operations / allowed_kinds are read only when allow is
// absent. Unknown names are errors (Signatory ignores them): a typo must not
// silently refuse, or allow, what was meant. Names of operations from
// earlier protocols are accepted with a warning and match nothing.
func Normalize(allow map[string][]string, allowedOperations, allowedKinds []string) (map[string][]string, []string, error) {
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
			return &Error{Field: kindField, Msg: fmt.Sprintf("unknown request kind %s%s", domain.EchoName(kind),
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
				return &Error{Field: field, Msg: msg}
			case sub, slices.Contains(known, op):
			case op == OpSignaturePrefix:
				warnings = append(warnings, fmt.Sprintf("operation kind %q in %s matches nothing: Sigil refuses every request carrying a signature prefix (it ends a signed operation, never an unsigned one)", op, kind))
			case retiredOps[op]:
				warnings = append(warnings, fmt.Sprintf("operation kind %q in %s belongs to an earlier protocol and matches nothing", op, kind))
			default:
				names := slices.Concat(known, ballotNames(), slices.Sorted(maps.Keys(legacyOp)), []string{OpSignaturePrefix})
				return &Error{Field: field, Msg: fmt.Sprintf("unknown operation kind %s in %s%s", domain.EchoName(op), kind,
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

// ConsensusKinds are the request kinds (as Request.PolicyKind names them)
// that carry a chain id, a level and a round.
var ConsensusKinds = []string{string(request.KindBlock), request.OpPreattestation, request.OpAttestation, request.OpAttestationWithDAL}

// CheckChain applies allowed_chains: when the list is not empty, a request
// that carries a chain id (block, preattestation, attestation) must name
// one of its chains. who names the key in the message. A refusal is
// domain.KindForbidden.
func CheckChain(allowedChains []string, r *request.Request, who string) error {
	if len(allowedChains) == 0 || !r.HasWatermark() {
		return nil
	}
	if id := r.ChainID.String(); !slices.Contains(allowedChains, id) {
		return domain.Errorf(domain.KindForbidden, "chain %s is not allowed for %s (allowed_chains: %s)", id, who, strings.Join(allowedChains, ", "))
	}
	return nil
}

// Check applies an allow map (as Normalize returns it) to a classified
// request: its request kind must be allowed and, for a generic request,
// every operation in it (a ballot by `ballot` or by `ballot:<its vote>`, as
// Signatory's matchFilter). who names the key in the message. A refusal is
// domain.KindForbidden and comes with the violation's name, as Signatory's
// policy_violation_total counts it: the request kind, or the operation
// (ballot:<vote> for a ballot); "" when the request is allowed.
func Check(allow map[string][]string, r *request.Request, who string) (violation string, err error) {
	kind := r.PolicyKind()
	ops, ok := allow[kind]
	if !ok {
		return kind, domain.Errorf(domain.KindForbidden, "request kind %q is not allowed for %s", kind, who)
	}
	if r.Kind == request.KindGeneric {
		for i, op := range r.Ops {
			name := r.PolicyOp(i)
			if !slices.Contains(ops, op) && !slices.Contains(ops, name) {
				return name, domain.Errorf(domain.KindForbidden, "operation %q is not allowed for %s", name, who)
			}
		}
	}
	return "", nil
}
