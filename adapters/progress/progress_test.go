package progress_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/progress"
	"github.com/sigil-signer/sigil/adapters/progress/progresstest"
)

// TestBarOnTerminal draws the bar on a pseudo-terminal and reads what a
// user would see: the task, the count, the rate.
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
	for _, want := range []string{"generating keys", "40/40", "items/s", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal shows no %q:\n%q", want, out)
		}
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
