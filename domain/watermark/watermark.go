// Package watermark is Sigil's high-watermark (double-signing protection)
// logic. For block, preattestation and attestation requests, each (chain id,
// key hash, request kind) has a recorded mark: the (level, round) last signed,
// the Blake2b-256 digest of that signed message and the signature given for
// it. A new request must be strictly above the mark (level first, then
// round). The identical request at the recorded mark (a baker retrying after a
// timeout, perhaps against another replica) is answered with the recorded
// signature, or, when the mark was recorded without one (by Signatory, whose
// marks carry the message's digest but no signature), signed again: the same
// bytes signed twice are no double signature. Anything else at or below the
// mark is refused with a domain.KindConflict error. The package is pure: the storage backends call
// Decide and Raise inside their own atomic sections.
package watermark

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Request kinds that carry a watermark.
const (
	KindBlock          = "block"
	KindPreattestation = "preattestation"
	KindAttestation    = "attestation"
)

// Kinds lists the request kinds that carry a watermark.
var Kinds = []string{KindBlock, KindPreattestation, KindAttestation}

// ValidKind reports whether kind is a request kind that carries a watermark.
func ValidKind(kind string) bool {
	switch kind {
	case KindBlock, KindPreattestation, KindAttestation:
		return true
	}
	return false
}

// Key identifies one watermark: a chain, a key and a request kind.
type Key struct {
	ChainID string // base58 chain id (Net…)
	PKH     string // key hash (tz1…, tz2…, tz3…, tz4…)
	Kind    string // KindBlock, KindPreattestation or KindAttestation
}

func (k Key) String() string { return k.Kind + " " + k.PKH + " on " + k.ChainID }

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func isBase58(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(b58Alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// ValidChainID reports whether s has the shape of a base58 chain id: 15
// base58 characters starting with "Net". The checksum is not verified; the
// check only guarantees that s is safe to use as a file or document name.
func ValidChainID(s string) bool {
	return len(s) == 15 && strings.HasPrefix(s, "Net") && isBase58(s)
}

// ValidPKH reports whether s has the shape of a key hash: 36 base58
// characters starting with tz1, tz2, tz3 or tz4. The checksum is not
// verified.
func ValidPKH(s string) bool {
	if len(s) != 36 || !isBase58(s) {
		return false
	}
	switch s[:3] {
	case "tz1", "tz2", "tz3", "tz4":
		return true
	}
	return false
}

// Validate returns a domain.KindInvalid error when k is malformed.
func (k Key) Validate() error {
	if !ValidChainID(k.ChainID) {
		return domain.Errorf(domain.KindInvalid, "watermark: invalid chain id %q", domain.Echo(k.ChainID))
	}
	if !ValidPKH(k.PKH) {
		return domain.Errorf(domain.KindInvalid, "watermark: invalid key hash %q", domain.Echo(k.PKH))
	}
	if !ValidKind(k.Kind) {
		return domain.Errorf(domain.KindInvalid, "watermark: request kind %q carries no watermark", domain.Echo(k.Kind))
	}
	return nil
}

// Mark is a recorded (or requested) watermark.
type Mark struct {
	Level     int32
	Round     int32
	Digest    [32]byte // Blake2b-256 of the whole signed message
	Signature string   // base58 signature given for that message; empty if unknown
}

// Above reports whether m's (level, round) is strictly above o's.
func (m Mark) Above(o Mark) bool {
	if m.Level != o.Level {
		return m.Level > o.Level
	}
	return m.Round > o.Round
}

// SamePosition reports whether m and o have the same level and round.
func (m Mark) SamePosition(o Mark) bool { return m.Level == o.Level && m.Round == o.Round }

func (m Mark) String() string { return fmt.Sprintf("level %d round %d", m.Level, m.Round) }

// Validate returns a domain.KindInvalid error when m's level or round is
// negative.
func (m Mark) Validate() error {
	if m.Level < 0 || m.Round < 0 {
		return domain.Errorf(domain.KindInvalid, "watermark: invalid level %d round %d", m.Level, m.Round)
	}
	return nil
}

// ValidateCommit checks what a store's Commit receives: a valid key and a
// valid mark that carries the signature to record.
func ValidateCommit(k Key, m Mark) error {
	if err := k.Validate(); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Signature == "" {
		return domain.Errorf(domain.KindInvalid, "watermark: commit of %s for %s without a signature", m, k)
	}
	if _, err := tezos.ParseSignature(m.Signature); err != nil {
		return domain.Errorf(domain.KindInvalid, "watermark: commit of %s for %s: %v", m, k, err)
	}
	return nil
}

// Decision is the outcome of Decide.
type Decision int

// Decisions.
const (
	// Refuse: the request is at or below the recorded mark and is not its
	// identical repeat. Decide returns a domain.KindConflict error.
	Refuse Decision = iota
	// Accept: the request is above the recorded mark (or there is none); sign
	// it and record the new mark.
	Accept
	// Replay: the request is the identical repeat of the recorded one; answer
	// with the recorded signature and record nothing.
	Replay
	// Resign: the request is the identical repeat of a mark recorded with
	// its digest but without a signature (Signatory's marks, or marks
	// imported without one); sign the same bytes again and record nothing:
	// the mark stays as it is.
	Resign
)

func (d Decision) String() string {
	switch d {
	case Accept:
		return "accept"
	case Replay:
		return "replay"
	case Resign:
		return "resign"
	}
	return "refuse"
}

// Decide decides what to do with a request for mark next on key k, given
// the recorded mark (nil if there is none). A Refuse decision comes with a
// domain.KindConflict error naming both marks; Accept, Replay and Resign
// come with a nil error. A malformed next is refused with a
// domain.KindInvalid error.
func Decide(k Key, recorded *Mark, next Mark) (Decision, error) {
	if err := next.Validate(); err != nil {
		return Refuse, err
	}
	if recorded == nil || next.Above(*recorded) {
		return Accept, nil
	}
	if recorded.Signature != "" {
		if next.SamePosition(*recorded) && next.Digest == recorded.Digest {
			return Replay, nil
		}
	} else if sameMessage(*recorded, next) {
		return Resign, nil
	}
	return Refuse, domain.Errorf(domain.KindConflict,
		"%s %s is not above the recorded %s for %s on %s",
		k.Kind, next, recorded, k.PKH, k.ChainID)
}

// sameMessage reports whether next is the very message a mark recorded
// without its signature was recorded for: a digest was recorded (Signatory
// records the Blake2b-256 of the message, as Sigil does) and equals next's,
// at the same level and round (or the same level, for a mark that covers
// its whole level, see FromSignatory).
func sameMessage(recorded, next Mark) bool {
	if recorded.Digest == ([32]byte{}) || next.Digest != recorded.Digest || next.Level != recorded.Level {
		return false
	}
	return next.Round == recorded.Round || recorded.Round == WholeLevel
}

// Raise returns the mark to keep when importing in over recorded (nil if
// none), and whether it differs from recorded. Import only ever raises: a
// lower mark is ignored; at the same position the recorded mark is kept,
// except that it learns in's signature when both have the same digest and
// only in has a signature.
func Raise(recorded *Mark, in Mark) (Mark, bool) {
	if recorded == nil || in.Above(*recorded) {
		return in, true
	}
	if in.SamePosition(*recorded) && in.Digest == recorded.Digest &&
		recorded.Signature == "" && in.Signature != "" {
		m := *recorded
		m.Signature = in.Signature
		return m, true
	}
	return *recorded, false
}

// Record is one key's watermark, as exported and imported. Its JSON form is
// stable:
//
//	{"chain_id":"Net…","pkh":"tz1…","kind":"block","level":120,"round":1,
//	 "digest":"<64 hex digits>","signature":"edsig…"}
//
// signature is omitted when unknown.
type Record struct {
	Key
	Mark
}

// RecordJSON is the exact shape of a record's JSON form (for strict
// decoders that check field names before decoding).
type RecordJSON = recordJSON

type recordJSON struct {
	ChainID   string `json:"chain_id"`
	PKH       string `json:"pkh"`
	Kind      string `json:"kind"`
	Level     int32  `json:"level"`
	Round     int32  `json:"round"`
	Digest    string `json:"digest"`
	Signature string `json:"signature,omitempty"`
}

// chainIDPrefix is the base58check prefix of chain ids ("Net").
var chainIDPrefix = []byte{87, 82, 0}

// CheckChainID returns a domain.KindInvalid error unless s is a chain id
// whose base58check checksum holds (ValidChainID checks only the shape).
func CheckChainID(s string) error {
	raw, err := tezos.DecodeBase58Check(s)
	if err != nil || len(raw) != len(chainIDPrefix)+4 || string(raw[:len(chainIDPrefix)]) != string(chainIDPrefix) {
		reason := "not a base58check chain id"
		if errors.Is(err, tezos.ErrChecksum) {
			reason = "bad checksum"
		}
		return domain.Errorf(domain.KindInvalid, "watermark: invalid chain id %q: %s", domain.Echo(s), reason)
	}
	return nil
}

// Validate returns a domain.KindInvalid error when r is malformed: a bad
// key (a chain id or key hash whose checksum does not hold included), a
// negative level or round, or a signature that does not parse. Records
// come from files (imports, witnesses): a typo must not become a mark for
// a chain or key that does not exist.
func (r Record) Validate() error {
	if err := r.Key.Validate(); err != nil {
		return err
	}
	if err := CheckChainID(r.ChainID); err != nil {
		return err
	}
	if _, err := tezos.ParsePublicKeyHash(r.PKH); err != nil {
		return domain.Errorf(domain.KindInvalid, "watermark: invalid key hash: %v", err)
	}
	if err := r.Mark.Validate(); err != nil {
		return err
	}
	if r.Signature != "" {
		if _, err := tezos.ParseSignature(r.Signature); err != nil {
			return domain.Errorf(domain.KindInvalid, "watermark record for %s: signature: %v", r.Key, err)
		}
	}
	return nil
}

// MarshalJSON encodes r in its stable JSON form.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(recordJSON{
		ChainID:   r.ChainID,
		PKH:       r.PKH,
		Kind:      r.Kind,
		Level:     r.Level,
		Round:     r.Round,
		Digest:    hex.EncodeToString(r.Digest[:]),
		Signature: r.Signature,
	})
}

// UnmarshalJSON decodes and validates r's stable JSON form.
func (r *Record) UnmarshalJSON(b []byte) error {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return domain.Errorf(domain.KindInvalid, "watermark record: %v", err)
	}
	var out Record
	out.Key = Key{ChainID: j.ChainID, PKH: j.PKH, Kind: j.Kind}
	out.Level, out.Round, out.Signature = j.Level, j.Round, j.Signature
	d, err := hex.DecodeString(j.Digest)
	if err != nil || len(d) != len(out.Digest) {
		return domain.Errorf(domain.KindInvalid, "watermark record for %s: digest must be 64 hex digits", out.Key)
	}
	copy(out.Digest[:], d)
	if err := out.Validate(); err != nil {
		return err
	}
	*r = out
	return nil
}

// VerifyRecords checks, before an import stores anything, that every
// recorded signature belongs to its record: the key must be known (lookup
// returns its public key), and the signature must verify over the record's
// digest (ed25519, secp256k1, P-256 keys sign the digest), or, for BLS keys
// (which sign the message, not kept in a record), be a valid signature of
// the key's scheme. Records without a signature need no key. The first bad
// record is reported with its position (1-based).
func VerifyRecords(recs []Record, lookup func(pkh string) (tezos.PublicKey, bool)) error {
	for i, r := range recs {
		if r.Signature == "" {
			continue
		}
		sig, err := tezos.ParseSignature(r.Signature)
		if err != nil {
			return domain.Errorf(domain.KindInvalid, "record %d (%s): signature: %v", i+1, r.Key, err)
		}
		pk, ok := lookup(r.PKH)
		if !ok {
			return domain.Errorf(domain.KindInvalid, "record %d (%s): %s is not a key of this signer, so its signature cannot be checked (remove the signature to import the mark alone)", i+1, r.Key, r.PKH)
		}
		if pk.Type == tezos.BLS {
			err = tezos.ValidBLSSignature(sig)
		} else {
			err = pk.VerifyDigest(r.Digest, sig)
		}
		if err != nil {
			return domain.Errorf(domain.KindInvalid, "record %d (%s): the signature does not belong to this mark: %v", i+1, r.Key, err)
		}
	}
	return nil
}
