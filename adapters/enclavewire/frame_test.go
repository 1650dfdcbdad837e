package enclavewire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// countingReader records how many bytes were asked for, to prove that an
// oversized frame is refused before its body is read or allocated.
type countingReader struct {
	r     io.Reader
	total int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.total += n
	return n, err
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteFrame(&buf, []byte{0xa1, 0x62, 'O', 'k', 0xf6}))
	require.Equal(t, []byte{0, 0, 0, 5, 0xa1, 0x62, 'O', 'k', 0xf6}, buf.Bytes())
	got, err := ReadFrame(&buf, 0)
	require.NoError(t, err)
	require.Equal(t, []byte{0xa1, 0x62, 'O', 'k', 0xf6}, got)
	_, err = ReadFrame(&buf, 0)
	require.ErrorIs(t, err, io.EOF)
}

func TestFrameErrors(t *testing.T) {
	// Oversized: 0xffffffff announced; refused after reading only the header.
	cr := &countingReader{r: bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})}
	_, err := ReadFrame(cr, 0)
	require.ErrorIs(t, err, ErrFrameTooLarge)
	require.Equal(t, 4, cr.total)

	// Bound is a parameter.
	_, err = ReadFrame(bytes.NewReader([]byte{0, 0, 0, 11}), 10)
	require.ErrorIs(t, err, ErrFrameTooLarge)
	got, err := ReadFrame(bytes.NewReader(append([]byte{0, 0, 0, 10}, make([]byte, 10)...)), 10)
	require.NoError(t, err)
	require.Len(t, got, 10)

	_, err = ReadFrame(bytes.NewReader([]byte{0, 0, 0, 0}), 0)
	require.ErrorIs(t, err, ErrEmptyFrame)
	_, err = ReadFrame(bytes.NewReader([]byte{0, 0}), 0)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = ReadFrame(bytes.NewReader([]byte{0, 0, 0, 5, 1}), 0)
	require.True(t, errors.Is(err, io.ErrUnexpectedEOF), "got %v", err)
}
