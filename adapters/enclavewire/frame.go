package enclavewire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxFrame is the default bound on a frame's payload length (1 MiB).
// The Rust enclave itself refuses messages above 2 MiB.
const DefaultMaxFrame = 1 << 20

// ErrFrameTooLarge is returned by ReadFrame (wrapped) when the length prefix
// exceeds the bound. Nothing is allocated for such a frame.
var ErrFrameTooLarge = errors.New("frame too large")

// ErrEmptyFrame is returned by ReadFrame for a zero length prefix: a CBOR
// item is never empty.
var ErrEmptyFrame = errors.New("empty frame")

// WriteFrame writes payload preceded by its 4-byte big-endian length, in a
// single Write call.
func WriteFrame(w io.Writer, payload []byte) error {
	if uint64(len(payload)) > 0xffffffff {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err := w.Write(buf)
	clear(buf) // the payload may hold a plain private key (ImportUnencrypted)
	return err
}

// ReadFrame reads one frame and returns its payload. A length above max
// (DefaultMaxFrame if max <= 0) is an error returned before any allocation.
// A stream that ends cleanly before the first byte returns io.EOF; one that
// ends inside a frame returns io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}
