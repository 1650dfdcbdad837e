package enclaverpc

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// TestSignFrameMatchesCodec: the hand encoder writes exactly what the rpc
// codec (whose golden vectors match Signatory's client) writes.
func TestSignFrameMatchesCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	handles := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	lens := []int{0, 1, 23, 24, 255, 256, 4096, 65535, 65536, 70000}
	for i := 0; i < 500; i++ {
		h := handles[i%len(handles)]
		if i >= len(handles)*4 {
			h = r.Uint64() >> (r.IntN(64))
		}
		msg := make([]byte, lens[i%len(lens)])
		for j := range msg {
			msg[j] = byte(r.IntN(256))
		}
		v := []uint8{0, 1, 2, 255}[i%4]
		payload, err := enclavewire.EncodeRequest(enclavewire.NewSign(h, msg, v))
		require.NoError(t, err)
		want := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		want = append(want, payload...)
		prefix := []byte("xyz")
		got := appendSignFrame(bytes.Clone(prefix), h, msg, v)
		require.Equal(t, prefix, got[:3])
		require.Equal(t, want, got[3:], "handle %d, %d-byte message, version %d", h, len(msg), v)
	}
}

// TestFastSignature: the hand decoder agrees with enclavewire.DecodeReply on every
// reply it accepts, and declines the rest.
func TestFastSignature(t *testing.T) {
	for _, tg := range []enclavewire.Tagged{
		{Type: enclavewire.KeyEd25519, Bytes: bytes.Repeat([]byte{7}, 64)},
		{Type: enclavewire.KeySecp256k1, Bytes: bytes.Repeat([]byte{8}, 64)},
		{Type: enclavewire.KeyNistP256, Bytes: bytes.Repeat([]byte{9}, 64)},
		{Type: enclavewire.KeyBLS, Bytes: bytes.Repeat([]byte{10}, 96)},
		{Type: enclavewire.KeyEd25519, Bytes: []byte{}},
		{Type: enclavewire.KeyEd25519, Bytes: []byte{1, 2, 3}},
	} {
		b, err := enclavewire.EncodeOk(tg)
		require.NoError(t, err)
		got, ok := fastSignature(b)
		require.True(t, ok, "%x", b)
		var want enclavewire.Tagged
		require.NoError(t, enclavewire.DecodeReply(b, &want))
		require.Equal(t, want.Type, got.Type)
		require.Equal(t, want.Bytes, got.Bytes)
		// Any truncation or trailing byte is declined.
		for i := 0; i < len(b); i++ {
			_, ok := fastSignature(b[:i])
			require.False(t, ok)
		}
		_, ok = fastSignature(append(bytes.Clone(b), 0))
		require.False(t, ok)
	}
	errReply, _ := enclavewire.EncodeErr(enclavewire.NewError("signer error", "invalid handle"))
	arrayForm, _ := enclavewire.EncodeOk(map[string][]uint{"Ed25519": {1, 2}})
	for _, b := range [][]byte{
		errReply, arrayForm,
		{0xa1, 0x62, 'O', 'k', 0xa1, 0x63, 'R', 's', 'a', 0x41, 0x01},             // unknown key type
		{0xa1, 0x62, 'O', 'k', 0xa2, 0x63, 'B', 'l', 's', 0x41, 0x01},             // two entries
		{0xa1, 0x62, 'O', 'k', 0xa1, 0x63, 'B', 'l', 's', 0x5f, 0x41, 0x01, 0xff}, // indefinite bytes
		{0xa1, 0x62, 'O', 'k', 0xa1, 0x63, 'B', 'l', 's', 0x58, 0x01, 0x01},       // non-shortest length
	} {
		_, ok := fastSignature(b)
		require.False(t, ok, "%x", b)
	}
}

// FuzzFastSignature: whatever the enclave sends, the fast decoder accepts
// only replies that the codec accepts, with the same content.
func FuzzFastSignature(f *testing.F) {
	for _, tg := range []enclavewire.Tagged{{Type: enclavewire.KeyEd25519, Bytes: bytes.Repeat([]byte{7}, 64)}, {Type: enclavewire.KeyBLS, Bytes: bytes.Repeat([]byte{1}, 96)}} {
		b, _ := enclavewire.EncodeOk(tg)
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x62, 'O', 'k', 0xa1, 0x63, 'B', 'l', 's', 0x58, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := fastSignature(b)
		if !ok {
			return
		}
		var want enclavewire.Tagged
		if err := enclavewire.DecodeReply(b, &want); err != nil {
			t.Fatalf("fast decoder accepted %x, the codec refuses it: %v", b, err)
		}
		if got.Type != want.Type || !bytes.Equal(got.Bytes, want.Bytes) {
			t.Fatalf("fast decoder and codec disagree on %x", b)
		}
	})
}
