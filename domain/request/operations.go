package request

import "slices"

// Operation bodies of the current protocol (Tallinn, 024, whose unsigned
// operations keep Seoul's (023) layouts: gotez's proto_024_PtTALLiN aliases
// every one of them), as Octez operation_repr.ml defines them and ECAD Labs'
// gotez decodes them. Each body decoder only checks and skips; the
// kind names are gotez's OperationKind() names, which Signatory's policy uses.
//
// Encodings used below:
//
//	N, Z      zarith (base-128, high bit = continuation)
//	pkh       tag 0..3 ‖ 20 bytes
//	pk        tag 0 ‖ 32 | tag 1 ‖ 33 | tag 2 ‖ 33 | tag 3 ‖ 48
//	contract  tag 0 ‖ pkh | tag 1 ‖ 20 bytes ‖ 1 padding byte
//	option    0x00 | 0xff ‖ value
//	dyn       4-byte big-endian length ‖ bytes (Micheline expressions,
//	          lists, byte strings)

type operation struct {
	name    string
	manager bool // preceded by source, fee, counter, gas_limit, storage_limit
	body    func(r *reader) error
}

const tagSignaturePrefix = 255

var operations = [256]*operation{
	1:  {name: "seed_nonce_revelation", body: seq(i32("level"), fixed(32, "nonce"))},
	2:  {name: "double_consensus_operation_evidence", body: seq(fixed(2, "slot"), dyn("op1"), dyn("op2"))},
	3:  {name: "double_baking_evidence", body: seq(dyn("bh1"), dyn("bh2"))},
	4:  {name: "activate_account", body: seq(fixed(20, "pkh"), fixed(20, "secret"))},
	5:  {name: "proposals", body: seq(pkh("source"), i32("period"), proposalList)},
	6:  {name: "ballot", body: seq(pkh("source"), i32("period"), fixed(32, "proposal"), ballot)},
	8:  {name: "vdf_revelation", body: fixed(200, "solution")},
	9:  {name: "drain_delegate", body: seq(pkh("consensus_key"), pkh("delegate"), pkh("destination"))},
	17: {name: "failing_noop", body: dyn("arbitrary")},
	20: {name: "preattestation", body: consensusContent},
	21: {name: "attestation", body: consensusContent},
	23: {name: "attestation_with_dal", body: seq(consensusContent, zarith("dal_attestation"))},
	24: {name: "dal_entrapment_evidence", body: seq(dyn("attestation"), fixed(2, "consensus_slot"),
		fixed(1, "slot_index"), i32("shard index"), dyn("shard"), fixed(48, "shard proof"))},
	30: {name: "preattestations_aggregate", body: seq(aggregateContent, dyn("committee"))},
	31: {name: "attestations_aggregate", body: seq(aggregateContent, dyn("committee"))},

	107: {name: "reveal", manager: true, body: seq(publicKey("public_key"), blsProof)},
	108: {name: "transaction", manager: true, body: transaction},
	109: {name: "origination", manager: true, body: seq(zarith("balance"), optPKH("delegate"), dyn("code"), dyn("storage"))},
	110: {name: "delegation", manager: true, body: optPKH("delegate")},
	111: {name: "register_global_constant", manager: true, body: dyn("value")},
	112: {name: "set_deposits_limit", manager: true, body: optZarith("limit")},
	113: {name: "increase_paid_storage", manager: true, body: seq(zarith("amount"), originated("destination"))},
	114: {name: "update_consensus_key", manager: true, body: seq(publicKey("pk"), blsProof)},
	115: {name: "update_companion_key", manager: true, body: seq(publicKey("pk"), blsProof)},
	158: {name: "transfer_ticket", manager: true, body: seq(dyn("ticket_contents"), dyn("ticket_ty"),
		contract("ticket_ticketer"), zarith("ticket_amount"), contract("destination"), dyn("entrypoint"))},
	200: {name: "smart_rollup_originate", manager: true, body: seq(pvmKind, dyn("kernel"), dyn("parameters_ty"), whitelist)},
	201: {name: "smart_rollup_add_messages", manager: true, body: dyn("message")},
	202: {name: "smart_rollup_cement", manager: true, body: fixed(20, "rollup")},
	203: {name: "smart_rollup_publish", manager: true, body: seq(fixed(20, "rollup"),
		fixed(32, "compressed_state"), i32("inbox_level"), fixed(32, "predecessor"), fixed(8, "number_of_ticks"))},
	204: {name: "smart_rollup_refute", manager: true, body: seq(fixed(20, "rollup"), pkh("opponent"), refutation)},
	205: {name: "smart_rollup_timeout", manager: true, body: seq(fixed(20, "rollup"), pkh("alice"), pkh("bob"))},
	206: {name: "smart_rollup_execute_outbox_message", manager: true, body: seq(fixed(20, "rollup"),
		fixed(32, "cemented_commitment"), dyn("output_proof"))},
	207: {name: "smart_rollup_recover_bond", manager: true, body: seq(fixed(20, "rollup"), pkh("staker"))},
	230: {name: "dal_publish_commitment", manager: true, body: seq(fixed(1, "slot_index"),
		fixed(48, "commitment"), fixed(96, "commitment_proof"))},
	250: {name: "zk_rollup_origination", manager: true, body: seq(dyn("public_parameters"),
		dyn("circuits_info"), dyn("init_state"), i32("nb_ops"))},
	251: {name: "zk_rollup_publish", manager: true, body: seq(fixed(20, "zk_rollup"), zkRollupOps)},
	252: {name: "zk_rollup_update", manager: true, body: seq(fixed(20, "zk_rollup"), dyn("pending_pis"),
		dyn("private_pis"), dyn("fee_pi"), dyn("proof"))},
}

func operationByTag(tag byte) *operation { return operations[tag] }

type field func(r *reader) error

func seq(fs ...field) field {
	return func(r *reader) error {
		for _, f := range fs {
			if err := f(r); err != nil {
				return err
			}
		}
		return nil
	}
}

func fixed(n int, name string) field { return func(r *reader) error { return r.skip(n, name) } }
func dyn(name string) field          { return func(r *reader) error { return r.skipDyn(name) } }
func zarith(name string) field       { return func(r *reader) error { return r.zarith(name) } }
func pkh(name string) field          { return func(r *reader) error { return r.pkh(name) } }
func publicKey(name string) field    { return func(r *reader) error { return r.publicKey(name) } }
func contract(name string) field     { return func(r *reader) error { return r.contract(name) } }
func originated(name string) field   { return func(r *reader) error { return r.originated(name) } }
func i32(name string) field {
	return func(r *reader) error { _, err := r.i32(name); return err }
}

func optional(name string, f field) field {
	return func(r *reader) error {
		some, err := r.option(name)
		if err != nil || !some {
			return err
		}
		return f(r)
	}
}

func optPKH(name string) field    { return optional(name, pkh(name)) }
func optZarith(name string) field { return optional(name, zarith(name)) }

// managerFields skips source (pkh, remembered for transaction), fee, counter,
// gas_limit, storage_limit.
var managerFields = seq(source, zarith("fee"), zarith("counter"), zarith("gas_limit"), zarith("storage_limit"))

// source reads a manager operation's source key hash and keeps it (tag and
// hash, a sub-slice of the input) in r.source.
func source(r *reader) error {
	at := r.off
	if err := r.pkh("source"); err != nil {
		return err
	}
	r.source = r.b[at:r.off]
	return nil
}

// consensusContent: slot uint16, level int32, round int32, payload hash 32.
var consensusContent = seq(fixed(2, "slot"), i32("level"), i32("round"), fixed(32, "block_payload_hash"))

// aggregateContent: level int32, round int32, payload hash 32.
var aggregateContent = seq(i32("level"), i32("round"), fixed(32, "block_payload_hash"))

// blsProof: option of a 4-byte-length BLS signature (96 bytes), the proof of
// possession reveal and update_*_key carry for tz4 keys since Seoul.
func blsProof(r *reader) error {
	some, err := r.option("proof")
	if err != nil || !some {
		return err
	}
	at := r.off
	sig, err := r.dyn("proof")
	if err != nil {
		return err
	}
	if len(sig) != 96 {
		return r.errf("%s at offset %d is %d bytes, want a 96-byte BLS signature", r.where("proof"), at, len(sig))
	}
	return nil
}

// zkRollupOps: the op list of zk_rollup_publish (Octez zk_rollup_operation_repr
// and ticket_receipt, as the 023 encoding describes it): a 4-byte length,
// then entries of
//
//	op_code int31, price (ticket hash 32, amount Z), l1_dst pkh,
//	rollup_id 20, payload (4-byte length, 32-byte scalars),
//	ticket: tag 0 none | tag 1 some (contents and ty: Micheline
//	expressions, ticketer: contract id)
//
// Every entry is decoded: a list that is not exactly such entries is
// refused, as the protocol refuses it.
func zkRollupOps(r *reader) error {
	end, err := r.list("op")
	if err != nil {
		return err
	}
	for r.off < end {
		at := r.off
		code, err := r.i32("op_code")
		if err != nil {
			return err
		}
		if code < -(1<<30) || code > 1<<30-1 {
			return r.errf("%s %d at offset %d is out of the int31 range", r.where("op_code"), code, at)
		}
		if err := seq(fixed(32, "price id"), zarith("price amount"), pkh("l1_dst"), fixed(20, "rollup_id"))(r); err != nil {
			return err
		}
		at = r.off
		payload, err := r.dyn("payload")
		if err != nil {
			return err
		}
		if len(payload)%32 != 0 {
			return r.errf("%s at offset %d is %d bytes, not a list of 32-byte scalars", r.where("payload"), at, len(payload))
		}
		at = r.off
		tag, err := r.u8("ticket")
		if err != nil {
			return err
		}
		switch tag {
		case 0:
		case 1:
			if err := micheline(r); err != nil {
				return err
			}
			if err := micheline(r); err != nil {
				return err
			}
			if err := r.contract("ticketer"); err != nil {
				return err
			}
		default:
			return r.unknownTag("ticket option", tag, at)
		}
		if r.off > end {
			return r.errf("%s overruns its list, which ends at offset %d (now at offset %d)", r.where("op"), end, r.off)
		}
	}
	return nil
}

// proposalList: 4-byte length, then 32-byte protocol hashes.
func proposalList(r *reader) error {
	at := r.off
	l, err := r.dyn("proposals")
	if err != nil {
		return err
	}
	if len(l)%32 != 0 {
		return r.errf("%s at offset %d is %d bytes, not a list of 32-byte protocol hashes", r.where("proposals"), at, len(l))
	}
	return nil
}

// ballot: int8 0 yay, 1 nay, 2 pass; the vote is kept in r.vote.
func ballot(r *reader) error {
	at := r.off
	b, err := r.u8("ballot")
	if err != nil {
		return err
	}
	if int(b) >= len(BallotVotes) {
		return r.unknownTag("ballot", b, at)
	}
	r.vote = BallotVotes[b]
	return nil
}

// Staking pseudo-operations. The protocol (Octez apply.ml, since Oxford)
// applies a transaction as stake, unstake, finalize_unstake or
// set_delegate_parameters only when its destination is its own source (an
// implicit account calling itself) and its entrypoint is one of these; the
// same entrypoint on any other destination is an ordinary contract call that
// carries funds. Parse reports such a transaction under the pseudo-operation's
// name, so that a policy allowing `transaction` does not allow staking and a
// staking-only policy never allows a transfer. The rule is gotez's
// core.GetPseudoOperation, which Signatory applies: source equal to
// destination, and the entrypoint encoded with its reserved tag (6 to 9). An
// entrypoint spelled out by name (tag 255 then "stake") is a `transaction`
// for Signatory even to self; Sigil does the same. The protocol would apply
// it as the staking call, but only a key already allowed to transfer funds
// can sign it that way, so the name never widens a policy.
const (
	OpStake                 = "stake"
	OpUnstake               = "unstake"
	OpFinalizeUnstake       = "finalize_unstake"
	OpSetDelegateParameters = "set_delegate_parameters"
)

// PseudoOperationKinds lists the staking pseudo-operation kinds.
var PseudoOperationKinds = []string{OpStake, OpUnstake, OpFinalizeUnstake, OpSetDelegateParameters}

// pseudoByEntrypoint maps the reserved entrypoint tags 6 to 9.
var pseudoByEntrypoint = [10]string{6: OpStake, 7: OpUnstake, 8: OpFinalizeUnstake, 9: OpSetDelegateParameters}

// transaction: amount, destination (a contract id), parameters. It sets
// r.pseudo when the transaction is a staking pseudo-operation: destination
// equal to the source (tag 0, then the same tagged key hash) and a reserved
// staking entrypoint tag.
func transaction(r *reader) error {
	if err := r.zarith("amount"); err != nil {
		return err
	}
	at := r.off
	if err := r.contract("destination"); err != nil {
		return err
	}
	dest := r.b[at:r.off]
	r.dest = dest
	toSelf := len(r.source) > 0 && dest[0] == 0 && slices.Equal(dest[1:], r.source)
	tag, err := parameters(r)
	if err != nil {
		return err
	}
	if toSelf && tag < byte(len(pseudoByEntrypoint)) {
		r.pseudo = pseudoByEntrypoint[tag]
	}
	return nil
}

// noEntrypoint is what parameters returns when a transaction has none.
const noEntrypoint = 254

// parameters: option of (entrypoint, 4-byte-length Micheline value). It
// returns the entrypoint's tag (noEntrypoint when parameters are absent).
// Entrypoint: tag 0..9 for default, root, do, set_delegate, remove_delegate,
// deposit, stake, unstake, finalize_unstake, set_delegate_parameters; 255
// for a named one (1-byte length, at most 31 bytes).
func parameters(r *reader) (byte, error) {
	some, err := r.option("parameters")
	if err != nil || !some {
		return noEntrypoint, err
	}
	at := r.off
	t, err := r.u8("entrypoint")
	if err != nil {
		return 0, err
	}
	switch {
	case t <= 9:
	case t == 255:
		at := r.off
		n, err := r.u8("entrypoint name length")
		if err != nil {
			return 0, err
		}
		if n == 0 || n > 31 {
			return 0, r.errf("%s at offset %d has length %d, want 1 to 31", r.where("entrypoint name"), at, n)
		}
		if err := r.skip(int(n), "entrypoint name"); err != nil {
			return 0, err
		}
	default:
		return 0, r.unknownTag("entrypoint", t, at)
	}
	return t, r.skipDyn("parameters value")
}

// pvmKind: 0 arith, 1 wasm_2_0_0, 2 riscv.
func pvmKind(r *reader) error {
	at := r.off
	k, err := r.u8("pvm_kind")
	if err != nil {
		return err
	}
	if k > 2 {
		return r.unknownTag("pvm_kind", k, at)
	}
	return nil
}

// whitelist: option of a 4-byte-length list of key hashes.
func whitelist(r *reader) error { return optional("whitelist", dyn("whitelist"))(r) }

// refutation (smart_rollup_refute), Octez sc_rollup_game_repr.ml:
//
//	tag 0 start: player_commitment_hash 32, opponent_commitment_hash 32
//	tag 1 move:  choice N, step:
//	  tag 0 dissection: 4-byte-length list
//	  tag 1 proof: pvm_step (dyn), input_proof option of:
//	    tag 0 inbox: level int32, message_counter N, serialized_proof (dyn)
//	    tag 1 reveal: tag 0 raw_data (dyn) | 1 metadata | 2 dal_page
//	                  (published_level int32, slot_index uint8,
//	                  page_index int16, dal_proof dyn) | 3 dal_parameters
//	    tag 2 first_input
func refutation(r *reader) error {
	at := r.off
	t, err := r.u8("refutation")
	if err != nil {
		return err
	}
	switch t {
	case 0:
		return r.skip(64, "refutation start commitments")
	case 1:
	default:
		return r.unknownTag("refutation", t, at)
	}
	if err := r.zarith("refutation choice"); err != nil {
		return err
	}
	at = r.off
	if t, err = r.u8("refutation step"); err != nil {
		return err
	}
	switch t {
	case 0:
		return r.skipDyn("dissection")
	case 1:
	default:
		return r.unknownTag("refutation step", t, at)
	}
	if err := r.skipDyn("pvm_step"); err != nil {
		return err
	}
	some, err := r.option("input_proof")
	if err != nil || !some {
		return err
	}
	at = r.off
	if t, err = r.u8("input_proof"); err != nil {
		return err
	}
	switch t {
	case 0:
		return inboxProof(r)
	case 1:
	case 2:
		return nil
	default:
		return r.unknownTag("input_proof", t, at)
	}
	at = r.off
	if t, err = r.u8("reveal_proof"); err != nil {
		return err
	}
	switch t {
	case 0:
		return r.skipDyn("raw_data")
	case 1, 3:
		return nil
	case 2:
		return dalPageProof(r)
	}
	return r.unknownTag("reveal_proof", t, at)
}

var (
	inboxProof   = seq(i32("inbox level"), zarith("message_counter"), dyn("serialized_proof"))
	dalPageProof = seq(i32("published_level"), fixed(1, "slot_index"), fixed(2, "page_index"), dyn("dal_proof"))
)
