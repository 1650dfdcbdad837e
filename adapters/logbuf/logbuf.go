// Package logbuf is the daemon's log output: a buffered writer in front of
// standard error that saves a system call per log line (a signer under load
// logs every signature). Lines reach the output within FlushInterval, at
// once for records at warning level and above (see Handler), and on Close.
// A crash can lose at most the last FlushInterval of informational lines;
// every consensus signature is also recorded durably by the watermark store.
package logbuf

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// FlushInterval bounds how long a line waits in the buffer.
const FlushInterval = 100 * time.Millisecond

// Writer buffers writes to an underlying writer. It is safe for concurrent
// use.
type Writer struct {
	mu     sync.Mutex
	out    io.Writer
	buf    *bufio.Writer
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// New returns a Writer over out and starts its periodic flush.
func New(out io.Writer) *Writer {
	w := &Writer{out: out, buf: bufio.NewWriterSize(out, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *Writer) loop() {
	defer close(w.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write buffers p (one log record); after Close it writes through.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.out.Write(p)
	}
	return w.buf.Write(p)
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Flush()
}

// Close flushes, stops the periodic flush and makes later writes go
// straight through. It is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	err := w.buf.Flush()
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return err
}

// Handler wraps h so that a record at warning level or above is flushed at
// once, with everything logged before it.
func Handler(h slog.Handler, w *Writer) slog.Handler { return &flushing{h: h, w: w} }

type flushing struct {
	h slog.Handler
	w *Writer
}

func (f *flushing) Enabled(ctx context.Context, l slog.Level) bool { return f.h.Enabled(ctx, l) }

func (f *flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.h.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := f.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (f *flushing) WithAttrs(as []slog.Attr) slog.Handler {
	return &flushing{h: f.h.WithAttrs(as), w: f.w}
}

func (f *flushing) WithGroup(name string) slog.Handler {
	return &flushing{h: f.h.WithGroup(name), w: f.w}
}
