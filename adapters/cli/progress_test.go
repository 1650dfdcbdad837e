package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/progress/progresstest"
)

// TestGenerateShowsProgress: `generate -n 200` at log level info draws a
// clean bar on a terminal (a pseudo-terminal here): every "key generated"
// line whole, above the bar, and one bar in the scrollback, finished; and
// it writes progress log lines when its error output is not a terminal.
func TestGenerateShowsProgress(t *testing.T) {
	e := newSignerEnv(t)

	// A terminal.
	term := progresstest.Open(t)
	tty := term.TTY
	var out bytes.Buffer
	root := NewRoot(&out, tty)
	root.SetArgs([]string{"-c", e.cfg, "--timeout", "60s", "--log", "info", "generate", "-n", "200"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("generate -n 200: %v", err)
	}
	if n := strings.Count(out.String(), "tz1"); n != 200 {
		t.Errorf("generate printed %d addresses, want 200:\n%s", n, out.String())
	}
	lines := progresstest.Lines(term.Screen())
	var bars, generated int
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "generating ed25519 keys in vault cs"):
			bars++
			if i != len(lines)-1 || !strings.Contains(l, " 100% ") || !strings.Contains(l, "200/200 in ") {
				t.Errorf("line %d: %q; want only the finished bar, last", i, l)
			}
		case strings.Contains(l, `msg="key generated"`):
			generated++
			if !regexp.MustCompile(`^time=\S+ level=INFO msg="key generated" vault=cs pkh=tz1\w{33} type=ed25519$`).MatchString(l) {
				t.Errorf("line %d is a broken log line: %q", i, l)
			}
		default:
			if strings.Contains(l, "█") || strings.Contains(l, "░") {
				t.Errorf("line %d carries a piece of a bar: %q", i, l)
			}
		}
	}
	if bars != 1 || generated != 200 {
		t.Errorf("the terminal shows %d bars and %d whole \"key generated\" lines, want 1 and 200", bars, generated)
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
