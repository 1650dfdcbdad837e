package enclaverpc

import (
	"encoding/binary"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// The hot path's two messages, encoded and decoded by hand: a Sign request,
// and an Ok reply holding one signature. The encoding is byte-identical to
// enclavewire.EncodeRequest (fastpath_test.go checks it on random inputs); the
// decoder accepts only the canonical form
// {"Ok": {<key type>: <byte string>}} with nothing after it, and anything
// else goes to enclavewire.DecodeReply, which stays the one judge of what is valid.

// appendHead appends a CBOR head of major type major and argument n, in
// its shortest form.
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, 3, uint64(len(s))), s...)
}

// appendSignFrame appends the framed request
// {"Sign": {"handle": h, "message": msg, "version": v}}.
func appendSignFrame(b []byte, h uint64, msg []byte, v uint8) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0) // length, filled in below
	b = append(b, 0xa1)
	b = appendText(b, "Sign")
	b = append(b, 0xa3)
	b = appendText(b, "handle")
	b = appendHead(b, 0, h)
	b = appendText(b, "message")
	b = appendHead(b, 2, uint64(len(msg)))
	b = append(b, msg...)
	b = appendText(b, "version")
	b = appendHead(b, 0, uint64(v))
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// appendFrame appends a framed payload.
func appendFrame(b, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// readHead reads a CBOR head of the given major type with a definite
// argument; ok is false for anything else.
func readHead(b []byte, major byte) (n uint64, rest []byte, ok bool) {
	if len(b) == 0 || b[0]>>5 != major {
		return 0, nil, false
	}
	ai := b[0] & 0x1f
	b = b[1:]
	switch {
	case ai < 24:
		return uint64(ai), b, true
	case ai == 24 && len(b) >= 1 && b[0] >= 24:
		return uint64(b[0]), b[1:], true
	case ai == 25 && len(b) >= 2:
		return uint64(binary.BigEndian.Uint16(b)), b[2:], true
	}
	return 0, nil, false // longer forms never occur in a signature reply
}

var okKey = []byte{0x62, 'O', 'k'}

// fastSignature decodes {"Ok": {<key type>: <bytes>}}; ok is false when
// the reply has any other shape (then enclavewire.DecodeReply decides).
func fastSignature(reply []byte) (enclavewire.Tagged, bool) {
	if len(reply) < 5 || reply[0] != 0xa1 || string(reply[1:4]) != string(okKey) || reply[4] != 0xa1 {
		return enclavewire.Tagged{}, false
	}
	n, rest, ok := readHead(reply[5:], 3)
	if !ok || uint64(len(rest)) < n {
		return enclavewire.Tagged{}, false
	}
	kt := enclavewire.KeyType(rest[:n])
	if !kt.Valid() {
		return enclavewire.Tagged{}, false
	}
	m, rest, ok := readHead(rest[n:], 2)
	if !ok || uint64(len(rest)) != m {
		return enclavewire.Tagged{}, false
	}
	return enclavewire.Tagged{Type: kt, Bytes: rest}, true
}
