package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/progress/progresstest"
)

// TestGenerateShowsProgress: `generate -n` draws a bar with the count on a
// terminal (a pseudo-terminal here) and writes progress log lines when its
// error output is not a terminal.
func TestGenerateShowsProgress(t *testing.T) {
	e := newSignerEnv(t)

	// A terminal.
	term := progresstest.Open(t)
	tty := term.TTY
	var out bytes.Buffer
	root := NewRoot(&out, tty)
	root.SetArgs([]string{"-c", e.cfg, "--timeout", "30s", "generate", "-n", "12"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("generate -n 12: %v", err)
	}
	if n := strings.Count(out.String(), "tz1"); n != 12 {
		t.Errorf("generate printed %d addresses, want 12:\n%s", n, out.String())
	}
	s := term.Screen()
	for _, want := range []string{"generating ed25519 keys in vault cs", "12/12", "100%", "items/s"} {
		if !strings.Contains(s, want) {
			t.Errorf("the terminal shows no %q:\n%q", want, s)
		}
	}

	// Not a terminal: log lines.
	_, errOut, err := runCLI(t, "", "-c", e.cfg, "--timeout", "30s", "generate", "-n", "3")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, `msg="progress done" task="generating ed25519 keys in vault cs" done=3 total=3`) {
		t.Errorf("no progress log line on a non-terminal:\n%s", errOut)
	}
	if strings.Contains(errOut, "%") || strings.Contains(errOut, "█") {
		t.Errorf("a bar was drawn on a non-terminal:\n%s", errOut)
	}
}
