package signer

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Policy is what one key may sign, as Signatory's `tezos:` section says.
type Policy struct {
	// Allow maps a request kind (block, preattestation, attestation,
	// generic, micheline) to the operation kinds allowed in it; only the
	// generic list is consulted, an empty list allows no generic operation.
	Allow map[string][]string
	// LogPayloads logs the hex of every signed message.
	LogPayloads bool
	// AuthorizedKeys, when non-empty, are the client keys allowed to ask
	// this key to sign (they replace the server-wide list for this key).
	AuthorizedKeys []tezos.PublicKey
	// AllowProofOfPossession allows GET /bls_prove_possession for this key.
	AllowProofOfPossession bool
}

// AllowAll returns a policy allowing every request and operation kind and
// proofs of possession (development only).
func AllowAll() *Policy {
	return &Policy{
		Allow: map[string][]string{
			"block": nil, "preattestation": nil, "attestation": nil, "micheline": nil,
			"generic": request.GenericOperationKinds(),
		},
		AllowProofOfPossession: true,
	}
}

// legacyKind maps older Signatory request kind names to current ones.
var legacyKind = map[string]string{
	"endorsement":             "attestation",
	"preendorsement":          "preattestation",
	"endorsement_with_slot":   "attestation",
	"attestation_with_dal":    "attestation",
	"preattestation_with_dal": "preattestation",
}

// NormalizePolicy checks a policy's kind names and folds Signatory's older
// spellings (allowed_operations / allowed_kinds, endorsement) into Allow.
// Unknown names are errors: a typo must not silently refuse (or allow).
func NormalizePolicy(allow map[string][]string, allowedOperations, allowedKinds []string) (map[string][]string, error) {
	out := map[string][]string{}
	add := func(kind string, ops []string) error {
		if k, ok := legacyKind[kind]; ok {
			kind = k
		}
		switch request.Kind(kind) {
		case request.KindBlock, request.KindPreattestation, request.KindAttestation, request.KindGeneric, request.KindMicheline:
		default:
			return fmt.Errorf("unknown request kind %q (want block, preattestation, attestation, generic or micheline)", kind)
		}
		known := request.GenericOperationKinds()
		for _, op := range ops {
			if !slices.Contains(known, op) {
				return fmt.Errorf("unknown operation kind %q in %s (known: %s)", op, kind, strings.Join(known, ", "))
			}
		}
		out[kind] = append(out[kind], ops...)
		return nil
	}
	for kind, ops := range allow {
		if err := add(kind, ops); err != nil {
			return nil, err
		}
	}
	for _, kind := range allowedOperations {
		if err := add(kind, nil); err != nil {
			return nil, err
		}
	}
	if len(allowedKinds) > 0 {
		if err := add("generic", allowedKinds); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// check returns a KindForbidden error if p does not allow r.
func (p *Policy) check(pkh string, r *request.Request) error {
	ops, ok := p.Allow[string(r.Kind)]
	if !ok {
		return domain.Errorf(domain.KindForbidden, "request kind %q is not allowed for %s", r.Kind, pkh)
	}
	if r.Kind == request.KindGeneric {
		for _, op := range r.Ops {
			if !slices.Contains(ops, op) {
				return domain.Errorf(domain.KindForbidden, "operation %q is not allowed for %s", op, pkh)
			}
		}
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
