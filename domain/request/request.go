// Package request classifies the messages a Tezos remote signer is asked to
// sign. The first byte (the magic byte, or watermark) selects the kind:
// 0x11 Tenderbake block, 0x12 preattestation, 0x13 attestation (all three
// carry a chain id and a level and round the high-watermark guards), 0x03 a
// generic operation (a branch then a batch of unsigned operations, whose kinds
// the policy checks, with each ballot's vote) and 0x05 packed Micheline data
// (one well-formed expression). Parse decodes exactly as far as
// classification needs, following the binary layouts of the current Octez
// protocol (Tallinn, 024, as ECAD Labs' gotez and Taquito encode them), and
// refuses truncated, unknown or trailing bytes with a domain.KindInvalid error
// naming what was being decoded and where. It never panics and never allocates
// according to a length read from the input.
package request

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Kind is the request kind, as Signatory's policy names it.
type Kind string

// Request kinds.
const (
	KindBlock          Kind = "block"
	KindPreattestation Kind = "preattestation"
	KindAttestation    Kind = "attestation"
	KindGeneric        Kind = "generic"
	// KindPack is packed Micheline data (magic 0x05), gotez's and
	// Signatory's "pack"; Sigil's policy also accepts the older name
	// "micheline" for it.
	KindPack Kind = "pack"
)

// Magic bytes (watermarks) of sign requests.
const (
	MagicGeneric        byte = 0x03
	MagicPack           byte = 0x05
	MagicBlock          byte = 0x11
	MagicPreattestation byte = 0x12
	MagicAttestation    byte = 0x13
)

// Operation kinds of consensus requests (Request.OpKind).
const (
	OpPreattestation     = "preattestation"
	OpAttestation        = "attestation"
	OpAttestationWithDAL = "attestation_with_dal"
)

var (
	prefixChainID     = []byte{87, 82, 0}
	prefixPayloadHash = []byte{1, 106, 242}
)

// ChainID is a 4-byte Tezos chain id.
type ChainID [4]byte

// String returns the base58check form (Net…).
func (c ChainID) String() string { return tezos.EncodeBase58Check(prefixChainID, c[:]) }

// ParseChainID parses a base58 chain id (Net…), checksum verified.
func ParseChainID(s string) (ChainID, error) {
	raw, err := tezos.DecodeBase58Check(s)
	if err != nil || len(raw) != len(prefixChainID)+4 || !bytes.HasPrefix(raw, prefixChainID) {
		return ChainID{}, fmt.Errorf("invalid chain id %q: want a base58 chain id such as NetXdQprcVkpaWU", domain.Echo(s))
	}
	var c ChainID
	copy(c[:], raw[len(prefixChainID):])
	return c, nil
}

// PayloadHash is a 32-byte block payload hash.
type PayloadHash [32]byte

// String returns the base58check form (vh…).
func (h PayloadHash) String() string { return tezos.EncodeBase58Check(prefixPayloadHash, h[:]) }

// Request is a classified sign request.
type Request struct {
	Kind  Kind
	Magic byte

	// Block, preattestation and attestation only.
	ChainID     ChainID
	Level       int32
	Round       int32 // block: the round in the fitness (as octez-signer reads it)
	PayloadHash PayloadHash

	// PayloadRound is the block's payload_round (block only). Signatory uses
	// it as the block's watermark round; Sigil, like octez-signer, uses Round.
	PayloadRound int32

	// OpKind is the consensus operation's kind: preattestation, attestation or
	// attestation_with_dal (tz4 keys' simplified encodings, tags 40 and 41,
	// give preattestation and attestation).
	OpKind string
	// BLSMode is set when a consensus request uses the simplified tz4
	// encoding (tag 40 or 41, no slot).
	BLSMode bool

	// Ops lists the kinds of a generic request's operations, in order, with
	// Signatory's names (transaction, delegation, reveal, …).
	Ops []string
	// Ballots holds, at the index of each ballot in Ops, its vote (yay,
	// nay or pass), and "" at every other index; nil when the request has
	// no ballot.
	Ballots []string
	// Destinations holds, at the index of each transaction in Ops (staking
	// pseudo-operations included, whose destination is their source), its
	// destination, and the zero Contract at every other index; nil when
	// the request has no transaction. Other operations that move funds
	// (transfer_ticket, drain_delegate, origination's balance, smart rollup
	// outbox execution) are allowed or refused by their kind alone.
	Destinations []Contract
}

// Ballot votes, as the protocol and gotez name them (Octez vote_repr.ml:
// 0 yay, 1 nay, 2 pass).
const (
	BallotYay  = "yay"
	BallotNay  = "nay"
	BallotPass = "pass"
)

// BallotVotes lists the votes in tag order.
var BallotVotes = []string{BallotYay, BallotNay, BallotPass}

// OpBallot is the kind of a ballot operation.
const OpBallot = "ballot"

// PolicyOp returns the name a policy matches for the i-th operation of a
// generic request: "ballot:<vote>" for a ballot (which a policy allows by
// listing either `ballot` or `ballot:<vote>`, as Signatory's matchFilter
// does), else its kind.
func (r *Request) PolicyOp(i int) string {
	if r.Ballots != nil && r.Ballots[i] != "" {
		return OpBallot + ":" + r.Ballots[i]
	}
	return r.Ops[i]
}

// PolicyKind is the request kind a policy's `allow` names: the consensus
// operation's kind for preattestations and attestations (so an attestation
// with DAL content is "attestation_with_dal", allowed separately, as
// Signatory does), else Kind.
func (r *Request) PolicyKind() string {
	if r.OpKind != "" {
		return r.OpKind
	}
	return string(r.Kind)
}

// RequestKinds lists, sorted, every request kind PolicyKind reports: gotez's
// ListSignRequests for the current protocol, which Signatory's
// `list-requests` prints.
func RequestKinds() []string {
	out := []string{string(KindBlock), OpPreattestation, OpAttestation, OpAttestationWithDAL, string(KindGeneric), string(KindPack)}
	slices.Sort(out)
	return out
}

// HasWatermark reports whether the request is subject to the high-watermark
// check (block, preattestation, attestation).
func (r *Request) HasWatermark() bool {
	switch r.Kind {
	case KindBlock, KindPreattestation, KindAttestation:
		return true
	}
	return false
}

// Parse classifies a sign request by its magic byte and decodes it as far as
// needed. Any malformed input yields a domain.KindInvalid error.
func Parse(msg []byte) (*Request, error) {
	r := &reader{b: msg}
	if len(msg) == 0 {
		return nil, r.errf("empty request")
	}
	magic := msg[0]
	r.off = 1
	req := &Request{Magic: magic}
	var err error
	switch magic {
	case MagicBlock:
		req.Kind = KindBlock
		err = parseBlock(r, req)
	case MagicPreattestation:
		req.Kind = KindPreattestation
		err = parseConsensus(r, req)
	case MagicAttestation:
		req.Kind = KindAttestation
		err = parseConsensus(r, req)
	case MagicGeneric:
		req.Kind = KindGeneric
		err = parseGeneric(r, req)
	case MagicPack:
		req.Kind = KindPack
		err = parsePack(r)
	default:
		return nil, domain.Errorf(domain.KindInvalid, "unsupported request magic 0x%02x", magic)
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

func (r *reader) end() error {
	if n := r.remaining(); n != 0 {
		return r.errf("%d unexpected trailing bytes at offset %d", n, r.off)
	}
	return nil
}

func (r *reader) chainID(req *Request) error {
	s, err := r.take(4, "chain id")
	if err != nil {
		return err
	}
	copy(req.ChainID[:], s)
	return nil
}

func (r *reader) payloadHash(req *Request, field string) error {
	s, err := r.take(32, field)
	if err != nil {
		return err
	}
	copy(req.PayloadHash[:], s)
	return nil
}

// parseBlock decodes a Tenderbake block request:
//
//	chain_id 4 ‖ shell header ‖ protocol data (unsigned)
//	shell:    level int32, proto uint8, predecessor 32, timestamp int64,
//	          validation_pass uint8, operations_hash 32, fitness (4-byte
//	          length, list of 4-byte-length elements), context 32
//	protocol: payload_hash 32, payload_round int32, proof_of_work_nonce 8,
//	          seed_nonce_hash (option of 32 bytes), per_block_votes uint8
//
// (Octez block_header_repr.ml, gotez proto_021+ UnsignedBlockHeader.)
func parseBlock(r *reader, req *Request) error {
	r.ctx = "block header"
	if err := r.chainID(req); err != nil {
		return err
	}
	level, err := r.nonNegative("level")
	if err != nil {
		return err
	}
	req.Level = level
	if err := r.skip(1+32+8+1+32, "shell header (proto, predecessor, timestamp, validation pass, operations hash)"); err != nil {
		return err
	}
	fitness, err := r.dyn("fitness")
	if err != nil {
		return err
	}
	fitnessOff := r.off - len(fitness)
	round, err := parseFitness(r, fitness, fitnessOff, level)
	if err != nil {
		return err
	}
	req.Round = round
	if err := r.skip(32, "context hash"); err != nil {
		return err
	}
	if err := r.payloadHash(req, "payload hash"); err != nil {
		return err
	}
	if req.PayloadRound, err = r.nonNegative("payload round"); err != nil {
		return err
	}
	if err := r.skip(8, "proof of work nonce"); err != nil {
		return err
	}
	some, err := r.option("seed nonce hash")
	if err != nil {
		return err
	}
	if some {
		if err := r.skip(32, "seed nonce hash"); err != nil {
			return err
		}
	}
	if err := r.skip(1, "per block votes"); err != nil {
		return err
	}
	return r.end()
}

// parseFitness checks a Tenderbake fitness and returns its round. Layout
// (Octez fitness_repr.ml; octez-signer reads the round as the fitness's last
// 4 bytes): five 4-byte-length elements: version (1 byte, 0x02), level
// (int32), locked_round (empty or int32), predecessor_round (int32), round
// (int32).
func parseFitness(r *reader, fitness []byte, base int, level int32) (int32, error) {
	fr := &reader{b: fitness, ctx: "block header fitness"}
	var elems [][]byte
	for fr.remaining() > 0 {
		if len(elems) == 5 {
			return 0, r.errf("block header fitness at offset %d has more than 5 elements", base)
		}
		e, err := fr.dyn("element")
		if err != nil {
			return 0, r.errf("malformed block header fitness at offset %d: element %d overruns the fitness", base, len(elems))
		}
		elems = append(elems, e)
	}
	if len(elems) != 5 {
		return 0, r.errf("block header fitness at offset %d has %d elements, want 5 (Tenderbake)", base, len(elems))
	}
	if len(elems[0]) != 1 || elems[0][0] != 0x02 {
		return 0, r.errf("unsupported block header fitness version at offset %d (want a single byte 0x02)", base)
	}
	for i, want := range []int{-1, 4, -1, 4, 4} {
		if want >= 0 && len(elems[i]) != want {
			return 0, r.errf("block header fitness element %d at offset %d has %d bytes, want %d", i, base, len(elems[i]), want)
		}
	}
	if n := len(elems[2]); n != 0 && n != 4 {
		return 0, r.errf("block header fitness locked round at offset %d has %d bytes, want 0 or 4", base, n)
	}
	fitLevel := int32(uint32(elems[1][0])<<24 | uint32(elems[1][1])<<16 | uint32(elems[1][2])<<8 | uint32(elems[1][3]))
	if fitLevel != level {
		return 0, r.errf("block header fitness level %d does not match header level %d", fitLevel, level)
	}
	e := elems[4]
	round := int32(uint32(e[0])<<24 | uint32(e[1])<<16 | uint32(e[2])<<8 | uint32(e[3]))
	if round < 0 {
		return 0, r.errf("negative block round %d in fitness at offset %d", round, base)
	}
	return round, nil
}

// Consensus operation tags.
const (
	tagPreattestation        = 20
	tagAttestation           = 21
	tagAttestationWithDAL    = 23
	tagBLSModePreattestation = 40
	tagBLSModeAttestation    = 41
)

// parseConsensus decodes a preattestation (0x12) or attestation (0x13)
// request: chain_id 4 ‖ branch 32 ‖ tag ‖ contents, where contents is
//
//	20 preattestation, 21 attestation: slot uint16, level int32, round int32,
//	   block_payload_hash 32
//	23 attestation with DAL: the same, then dal_attestation (zarith)
//	40, 41 (tz4 keys): level int32, round int32, block_payload_hash 32
//
// (Octez operation_repr.ml; gotez proto_023_PtSeouLo sign_request.go.)
func parseConsensus(r *reader, req *Request) error {
	r.ctx = string(req.Kind)
	if err := r.chainID(req); err != nil {
		return err
	}
	if err := r.skip(32, "branch"); err != nil {
		return err
	}
	at := r.off
	tag, err := r.u8("operation tag")
	if err != nil {
		return err
	}
	switch {
	case req.Kind == KindPreattestation && tag == tagPreattestation:
		req.OpKind = OpPreattestation
	case req.Kind == KindPreattestation && tag == tagBLSModePreattestation:
		req.OpKind, req.BLSMode = OpPreattestation, true
	case req.Kind == KindAttestation && tag == tagAttestation:
		req.OpKind = OpAttestation
	case req.Kind == KindAttestation && tag == tagAttestationWithDAL:
		req.OpKind = OpAttestationWithDAL
	case req.Kind == KindAttestation && tag == tagBLSModeAttestation:
		req.OpKind, req.BLSMode = OpAttestation, true
	default:
		want := "20 or 40"
		if req.Kind == KindAttestation {
			want = "21, 23 or 41"
		}
		return r.errf("unexpected operation tag %d at offset %d in a %s request (want %s)", tag, at, req.Kind, want)
	}
	r.ctx = req.OpKind
	if !req.BLSMode {
		if err := r.skip(2, "slot"); err != nil {
			return err
		}
	}
	if req.Level, err = r.nonNegative("level"); err != nil {
		return err
	}
	if req.Round, err = r.nonNegative("round"); err != nil {
		return err
	}
	if err := r.payloadHash(req, "block payload hash"); err != nil {
		return err
	}
	if tag == tagAttestationWithDAL {
		if err := r.zarith("dal attestation"); err != nil {
			return err
		}
	}
	return r.end()
}

// parseGeneric decodes a generic operation request: branch 32, then one or
// more operations until the end of the message, each a tag and its body.
func parseGeneric(r *reader, req *Request) error {
	r.ctx = "generic operation"
	if err := r.skip(32, "branch"); err != nil {
		return err
	}
	if r.remaining() == 0 {
		return r.errf("generic operation has no operations after its branch (end of request at offset %d)", r.off)
	}
	// Each operation is at least 2 bytes; the capacity hint is bounded by
	// the input, not by anything the input claims.
	req.Ops = make([]string, 0, min(r.remaining()/2, 8))
	for i := 1; r.remaining() > 0; i++ {
		r.opName = ""
		at := r.off
		tag, _ := r.u8("operation tag")
		op := operationByTag(tag)
		if op == nil {
			if tag == tagSignaturePrefix {
				return r.errf("operation #%d at offset %d is a signature prefix (tag 255), not allowed in an unsigned operation", i, at)
			}
			return r.errf("unknown operation tag %d at offset %d (operation #%d)", tag, at, i)
		}
		r.opIndex, r.opName, r.pseudo, r.source, r.vote, r.dest = i, op.name, "", nil, "", nil
		if op.manager {
			if err := managerFields(r); err != nil {
				return err
			}
		}
		if err := op.body(r); err != nil {
			return err
		}
		name := op.name
		if name == "transaction" && r.pseudo != "" {
			name = r.pseudo
		}
		if r.vote != "" {
			if req.Ballots == nil {
				req.Ballots = make([]string, len(req.Ops), cap(req.Ops))
			}
			req.Ballots = append(req.Ballots, r.vote)
		} else if req.Ballots != nil {
			req.Ballots = append(req.Ballots, "")
		}
		if r.dest != nil {
			if req.Destinations == nil {
				req.Destinations = make([]Contract, len(req.Ops), cap(req.Ops))
			}
			req.Destinations = append(req.Destinations, contractFrom(r.dest))
		} else if req.Destinations != nil {
			req.Destinations = append(req.Destinations, Contract{})
		}
		req.Ops = append(req.Ops, name)
	}
	return nil
}

// GenericOperationKinds lists, sorted, every operation kind Parse can report
// in Request.Ops (the staking pseudo-operations included).
func GenericOperationKinds() []string {
	out := slices.Clone(PseudoOperationKinds)
	for _, op := range operations {
		if op != nil {
			out = append(out, op.name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
