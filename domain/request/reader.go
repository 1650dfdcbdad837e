package request

import (
	"encoding/binary"
	"strconv"

	"github.com/sigil-signer/sigil/domain"
)

// reader walks a sign request. Every read is bounds-checked against the
// remaining input; no read allocates, whatever a length field claims. Errors
// name what was being decoded (ctx and the field) and its offset in the
// request.
type reader struct {
	b   []byte
	off int
	ctx string // what is being decoded, e.g. "attestation"
	// opIndex and opName, when set, describe the operation of a batch being
	// decoded; the context string is only built when an error is reported.
	opIndex int
	opName  string
	// pseudo is the staking pseudo-operation a transaction to its own
	// source makes it (stake, unstake, …), or "".
	pseudo string
	// source is the current manager operation's source (tag and key hash,
	// a sub-slice of b), or nil.
	source []byte
	// vote is the current ballot's vote (yay, nay, pass), or "".
	vote string
	// dest is the current transaction's destination (an encoded contract
	// id, a sub-slice of b), or nil.
	dest []byte
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) where(field string) string {
	if r.opName != "" {
		return "operation #" + strconv.Itoa(r.opIndex) + " (" + r.opName + "): " + field
	}
	if r.ctx == "" {
		return field
	}
	return r.ctx + ": " + field
}

func (r *reader) errf(format string, args ...any) error {
	return domain.Errorf(domain.KindInvalid, "invalid sign request: "+format, args...)
}

func (r *reader) truncated(field string, need int) error {
	return r.errf("truncated %s at offset %d (need %d bytes, %d left)", r.where(field), r.off, need, r.remaining())
}

func (r *reader) unknownTag(field string, tag byte, at int) error {
	return r.errf("unknown %s tag %d at offset %d", r.where(field), tag, at)
}

// take returns the next n bytes (a sub-slice of the input, no copy).
func (r *reader) take(n int, field string) ([]byte, error) {
	if n < 0 || n > r.remaining() {
		return nil, r.truncated(field, n)
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) skip(n int, field string) error {
	_, err := r.take(n, field)
	return err
}

func (r *reader) u8(field string) (byte, error) {
	s, err := r.take(1, field)
	if err != nil {
		return 0, err
	}
	return s[0], nil
}

func (r *reader) u16(field string) (uint16, error) {
	s, err := r.take(2, field)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(s), nil
}

func (r *reader) i32(field string) (int32, error) {
	s, err := r.take(4, field)
	if err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(s)), nil
}

// nonNegative reads an int32 that Octez constrains to be >= 0 (raw levels,
// rounds).
func (r *reader) nonNegative(field string) (int32, error) {
	at := r.off
	v, err := r.i32(field)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, r.errf("negative %s %d at offset %d", r.where(field), v, at)
	}
	return v, nil
}

// dyn reads a 4-byte big-endian length and returns that many bytes (Octez
// Data_encoding dynamic size).
func (r *reader) dyn(field string) ([]byte, error) {
	at := r.off
	s, err := r.take(4, field+" length")
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(s)
	if uint64(n) > uint64(r.remaining()) {
		r.off = at
		return nil, r.errf("%s at offset %d declares %d bytes but only %d follow", r.where(field), at, n, r.remaining()-4)
	}
	return r.take(int(n), field)
}

func (r *reader) skipDyn(field string) error {
	_, err := r.dyn(field)
	return err
}

// zarith skips a Zarith number (N or Z: little-endian base-128 groups, high
// bit set on every byte but the last). Non-canonical encodings (a trailing
// zero group) are refused, as Octez refuses them.
func (r *reader) zarith(field string) error {
	start := r.off
	for i := r.off; i < len(r.b); i++ {
		if r.b[i]&0x80 == 0 {
			if i > start && r.b[i] == 0 {
				return r.errf("non-canonical zarith %s at offset %d (trailing zero byte)", r.where(field), start)
			}
			r.off = i + 1
			return nil
		}
	}
	return r.errf("truncated %s at offset %d (zarith number runs past the end of the request)", r.where(field), start)
}

// option reads Data_encoding's option tag: 0x00 none, 0xff some.
func (r *reader) option(field string) (bool, error) {
	at := r.off
	t, err := r.u8(field + " option tag")
	if err != nil {
		return false, err
	}
	switch t {
	case 0x00:
		return false, nil
	case 0xff:
		return true, nil
	}
	return false, r.errf("invalid %s option tag 0x%02x at offset %d (want 0x00 or 0xff)", r.where(field), t, at)
}

// pkh skips a tagged public key hash: tag 0..3 (tz1..tz4), then 20 bytes.
func (r *reader) pkh(field string) error {
	at := r.off
	t, err := r.u8(field)
	if err != nil {
		return err
	}
	if t > 3 {
		return r.unknownTag(field+" key hash", t, at)
	}
	return r.skip(20, field)
}

// publicKey skips a tagged public key: 0 ed25519 (32), 1 secp256k1 (33),
// 2 p256 (33), 3 bls (48).
func (r *reader) publicKey(field string) error {
	at := r.off
	t, err := r.u8(field)
	if err != nil {
		return err
	}
	sizes := [...]int{32, 33, 33, 48}
	if int(t) >= len(sizes) {
		return r.unknownTag(field+" public key", t, at)
	}
	return r.skip(sizes[t], field)
}

// contract skips a contract id (22 bytes): tag 0 implicit (tagged key hash),
// tag 1 originated (20-byte contract hash, 1 padding byte).
func (r *reader) contract(field string) error {
	at := r.off
	t, err := r.u8(field)
	if err != nil {
		return err
	}
	switch t {
	case 0:
		return r.pkh(field)
	case 1:
		return r.skip(21, field)
	}
	return r.unknownTag(field+" contract", t, at)
}

// originated skips an originated-only contract id: tag 1, 20 bytes, padding.
func (r *reader) originated(field string) error {
	at := r.off
	t, err := r.u8(field)
	if err != nil {
		return err
	}
	if t != 1 {
		return r.errf("%s at offset %d must be an originated contract (tag 1), got tag %d", r.where(field), at, t)
	}
	return r.skip(21, field)
}
