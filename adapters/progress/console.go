package progress

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
)

// Console is a terminal shared by log lines and progress bars. Everything
// the process writes to that terminal goes through it: log lines are written
// whole, above the bar (the bar's line is cleared, the lines written, the
// bar drawn again below them), so a line is never split by a bar and the
// scrollback holds one bar, not a copy per log line. Without an active bar
// it writes through.
type Console struct {
	mu      sync.Mutex
	out     io.Writer
	fd      int // -1 when the size cannot be asked
	bar     *bar
	pending []byte // the end of a log write that had no newline yet
}

// ConsoleFor returns w wrapped in a Console when w is a terminal (an
// *os.File on a terminal) or already a Console, and w itself otherwise.
// Log output and progress reporters given the result share the terminal.
func ConsoleFor(w io.Writer) io.Writer {
	if c, ok := w.(*Console); ok {
		return c
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return NewConsole(f)
	}
	return w
}

// NewConsole returns a console writing to out (a terminal).
func NewConsole(out io.Writer) *Console {
	c := &Console{out: out, fd: -1}
	if f, ok := out.(*os.File); ok {
		c.fd = int(f.Fd())
	}
	return c
}

// Write writes log output. Complete lines are written above the active bar;
// a trailing partial line waits for its newline while a bar is shown.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar == nil && len(c.pending) == 0 {
		return c.out.Write(p)
	}
	c.pending = append(c.pending, p...)
	i := bytes.LastIndexByte(c.pending, '\n')
	if i < 0 {
		if c.bar == nil {
			err := c.flushPendingLocked()
			return len(p), err
		}
		return len(p), nil
	}
	lines := c.pending[:i+1]
	var b bytes.Buffer
	if c.bar != nil {
		b.WriteString("\r\x1b[2K")
	}
	b.Write(lines)
	c.pending = append(c.pending[:0], c.pending[i+1:]...)
	if c.bar != nil {
		b.WriteString(c.bar.frame)
	}
	_, err := c.out.Write(b.Bytes())
	return len(p), err
}

func (c *Console) flushPendingLocked() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.out.Write(c.pending)
	c.pending = c.pending[:0]
	return err
}

// width is the terminal's width in columns (80 when it cannot be read).
func (c *Console) width() int {
	if c.fd >= 0 {
		if w, _, err := term.GetSize(c.fd); err == nil && w > 0 {
			return w
		}
	}
	return 80
}

// begin makes b the console's bar (one at a time: a second bar ends the
// first).
func (c *Console) begin(b *bar) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar != nil {
		c.endLocked(c.bar)
	}
	c.bar = b
	c.drawLocked(b, time.Now(), false)
}

// update redraws b (at most every redrawEvery, and always at the end).
func (c *Console) update(b *bar, force bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar != b {
		return
	}
	now := time.Now()
	if !force && now.Sub(b.drawn) < redrawEvery {
		return
	}
	c.drawLocked(b, now, false)
}

// end draws b's final state, moves below it and forgets it.
func (c *Console) end(b *bar) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar == b {
		c.endLocked(b)
	}
}

func (c *Console) endLocked(b *bar) {
	c.drawLocked(b, time.Now(), true)
	_, _ = io.WriteString(c.out, "\n")
	c.bar = nil
	_ = c.flushPendingLocked()
}

func (c *Console) drawLocked(b *bar, now time.Time, final bool) {
	b.drawn = now
	b.frame = "\r\x1b[2K" + b.render(now, final, c.width())
	_, _ = io.WriteString(c.out, b.frame)
}

// redrawEvery bounds how often a bar is redrawn.
const redrawEvery = 100 * time.Millisecond

// rateAfter is how long a bar waits before it shows a rate: a rate over a
// few milliseconds says nothing (the first item after the start would read
// as hundreds of thousands per second).
const rateAfter = time.Second

// bar is one task's state on a console.
type bar struct {
	what  string
	total int
	start time.Time

	mu   sync.Mutex
	done int

	// Guarded by the console's mutex.
	drawn time.Time
	frame string
}

// render formats the bar's line, never wider than width-1 columns (a line
// as wide as the terminal wraps, and each redraw would leave a copy):
//
//	what  45% [█████████░░░░░░░░░░░] 90/200  12.3 items/s  9s left
func (b *bar) render(now time.Time, final bool, width int) string {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	elapsed := now.Sub(b.start)
	pct := 100
	if b.total > 0 {
		pct = min(100, done*100/b.total)
	}
	var tail string
	switch {
	case final:
		tail = fmt.Sprintf("%d/%d in %s", done, b.total, elapsed.Round(100*time.Millisecond))
		if elapsed >= rateAfter && done > 0 {
			tail += fmt.Sprintf(" (%s items/s)", formatRate(float64(done)/elapsed.Seconds()))
		}
	case elapsed >= rateAfter && done > 0:
		rate := float64(done) / elapsed.Seconds()
		left := time.Duration(float64(b.total-done) / rate * float64(time.Second)).Round(time.Second)
		tail = fmt.Sprintf("%d/%d  %s items/s  %s left", done, b.total, formatRate(rate), left)
	default:
		tail = fmt.Sprintf("%d/%d", done, b.total)
	}
	head := fmt.Sprintf("%s %3d%% ", b.what, pct)
	room := width - 1 - utf8.RuneCountInString(head) - utf8.RuneCountInString(tail) - 3
	cells := min(30, room)
	var line string
	if cells >= 10 {
		full := cells * pct / 100
		line = head + "[" + strings.Repeat("█", full) + strings.Repeat("░", cells-full) + "] " + tail
	} else {
		line = head + tail
	}
	if r := []rune(line); len(r) > width-1 {
		line = string(r[:max(0, width-1)])
	}
	return line
}

func formatRate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// consoleTask is a ports.ProgressTask drawn on a console.
type consoleTask struct {
	c    *Console
	b    *bar
	once sync.Once
}

func (t *consoleTask) Add(n int) {
	t.b.mu.Lock()
	t.b.done += n
	finished := t.b.done >= t.b.total
	t.b.mu.Unlock()
	t.c.update(t.b, finished)
}

func (t *consoleTask) Done() { t.once.Do(func() { t.c.end(t.b) }) }
