package logbuf

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type syncBuf struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// Info lines are batched into few writes and appear within the flush
// interval; a warning is written at once with what preceded it; Close
// flushes and later lines go straight through.
func TestBuffering(t *testing.T) {
	out := &syncBuf{}
	w := New(out)
	log := slog.New(Handler(slog.NewTextHandler(w, nil), w))
	for i := range 100 {
		log.Info("signed", "n", i)
	}
	assert.Equal(t, 0, out.count(), "info lines are buffered")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "msg=signed") == 100 }, 5*FlushInterval, 10*time.Millisecond)
	assert.LessOrEqual(t, out.count(), 3, "100 lines in a few writes")

	log.Info("before")
	log.Warn("trouble")
	assert.Contains(t, out.String(), "msg=before", "a warning flushes what preceded it")
	assert.Contains(t, out.String(), "msg=trouble")

	log.Info("last")
	require.NoError(t, w.Close())
	assert.Contains(t, out.String(), "msg=last", "Close flushes")
	log.Info("after close")
	assert.Contains(t, out.String(), "after close", "writes after Close go through")
	require.NoError(t, w.Close())
}
