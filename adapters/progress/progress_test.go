package progress_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/progress"
	"github.com/sigil-signer/sigil/adapters/progress/progresstest"
)

// TestBarOnTerminal draws the bar on a pseudo-terminal and reads what a
// user would see: the task, the count, the time taken; a task shorter than
// a second shows no rate (a rate over milliseconds means nothing).
func TestBarOnTerminal(t *testing.T) {
	term := progresstest.Open(t)
	tty := term.TTY

	var logs bytes.Buffer
	r := progress.New(tty, slog.New(slog.NewTextHandler(&logs, nil)), progress.Options{})
	if !r.Terminal() {
		t.Fatal("a pseudo-terminal was not detected as a terminal")
	}
	task := r.Begin("generating keys", 40)
	for range 40 {
		task.Add(1)
		time.Sleep(5 * time.Millisecond)
	}
	task.Done()

	out := term.Screen()
	lines := progresstest.Lines(out)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "generating keys 100% [") || !strings.Contains(lines[0], "] 40/40 in ") {
		t.Errorf("the terminal shows %q, want one finished bar:\n%q", lines, out)
	}
	if strings.Contains(out, "items/s") {
		t.Errorf("a rate was shown for a task of 0.2 s:\n%q", out)
	}
	if logs.Len() != 0 {
		t.Errorf("on a terminal the progress is not logged: %s", logs.String())
	}
}

// TestLogLinesWhenNotATerminal: on a file or pipe, periodic log lines and
// a final one; no bar characters.
func TestLogLinesWhenNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	r := progress.New(f, log, progress.Options{Interval: 10 * time.Millisecond})
	if r.Terminal() {
		t.Fatal("a regular file was taken for a terminal")
	}
	task := r.Begin("importing watermarks", 10)
	task.Add(3)
	read := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(read(), "msg=progress task=\"importing watermarks\" done=3 total=10") {
		if time.Now().After(deadline) {
			t.Fatalf("no periodic progress line:\n%s", read())
		}
		time.Sleep(5 * time.Millisecond)
	}
	task.Add(7)
	task.Done()
	task.Done() // twice is harmless
	out := read()
	if strings.Count(out, `msg="progress done" task="importing watermarks" done=10 total=10`) != 1 {
		t.Errorf("no single final line:\n%s", out)
	}
	if !strings.Contains(out, "rate_per_s=") || !strings.Contains(out, "eta=") {
		t.Errorf("progress lines lack the rate or the time left:\n%s", out)
	}
	if b, _ := os.ReadFile(f.Name()); len(b) != 0 {
		t.Errorf("something was drawn on a non-terminal: %q", b)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestBarRateIsReal: the rate appears once a second has passed and is the
// real one (items done over time elapsed), never the burst of the first
// item; the time left follows from it.
func TestBarRateIsReal(t *testing.T) {
	term := progresstest.Open(t)
	r := progress.New(term.TTY, nil, progress.Options{})
	task := r.Begin("loading keys", 20)
	task.Add(1) // the first item at once: the old bar showed ~300,000 items/s here
	start := time.Now()
	for range 11 {
		time.Sleep(120 * time.Millisecond)
		task.Add(1)
	}
	elapsed := time.Since(start)
	task.Done()
	out := term.Screen()
	rates := regexp.MustCompile(`([0-9.]+) items/s`).FindAllStringSubmatch(out, -1)
	if len(rates) == 0 {
		t.Fatalf("no rate shown after %s:\n%q", elapsed, out)
	}
	// 12 items in at least 1.3 s: never more than 12/1 s.
	for _, m := range rates {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil || v <= 0 || v > 12 {
			t.Errorf("rate %q shown, want a real rate in (0, 12] items/s:\n%q", m[0], out)
		}
	}
	if !strings.Contains(out, " left") {
		t.Errorf("no time left shown:\n%q", out)
	}
	lines := progresstest.Lines(out)
	if len(lines) != 1 || !strings.Contains(lines[0], "12/20 in ") {
		t.Errorf("the terminal shows %q, want one bar, ended at 12/20", lines)
	}
}

// TestLogLinesAboveBar: log lines written while a bar is drawn (whole or in
// pieces, as a buffered log writer flushes them) appear whole, above the
// bar, and the scrollback holds one bar: the last one.
func TestLogLinesAboveBar(t *testing.T) {
	term := progresstest.Open(t)
	console := progress.ConsoleFor(term.TTY)
	if _, ok := console.(*progress.Console); !ok {
		t.Fatalf("ConsoleFor(a terminal) = %T, want a *Console", console)
	}
	log := slog.New(slog.NewTextHandler(console, nil))
	r := progress.New(console, log, progress.Options{})
	task := r.Begin("generating p256 keys in vault cs", 200)
	for i := range 200 {
		task.Add(1)
		if i%10 == 0 {
			log.Info("key generated", "vault", "cs", "n", i)
		}
		if i == 50 {
			// A record split across two writes.
			_, _ = io.WriteString(console, "time=x level=INFO msg=\"split ")
			time.Sleep(150 * time.Millisecond) // a redraw in between
			task.Add(0)
			_, _ = io.WriteString(console, "record\" end=1\n")
		}
		if i%50 == 0 {
			time.Sleep(120 * time.Millisecond)
		}
	}
	task.Done()
	log.Info("after the bar")
	lines := progresstest.Lines(term.Screen())
	var bars, logged int
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "generating p256 keys"):
			bars++
			if !strings.Contains(l, "200/200 in ") || i != len(lines)-2 {
				t.Errorf("line %d is a bar %q; want only the finished bar, just before the last log line", i, l)
			}
		case strings.HasPrefix(l, "time="):
			logged++
			if strings.Contains(l, "█") || strings.Contains(l, "%") {
				t.Errorf("log line %d carries a piece of the bar: %q", i, l)
			}
		default:
			t.Errorf("line %d is neither a log line nor the bar: %q", i, l)
		}
	}
	if bars != 1 || logged != 22 {
		t.Errorf("%d bars and %d log lines on the screen, want 1 and 22:\n%s", bars, logged, strings.Join(lines, "\n"))
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, `msg="split record" end=1`) }) {
		t.Errorf("the record written in two pieces is not whole:\n%s", strings.Join(lines, "\n"))
	}
}
