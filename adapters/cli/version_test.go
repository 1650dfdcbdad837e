package cli

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersionPrintsBuildInfo(t *testing.T) {
	var out, errb bytes.Buffer
	root := NewRoot(&out, &errb)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatalf("version: %v (%s)", err, errb.String())
	}
	s := out.String()
	if !strings.HasPrefix(s, "sigil ") || strings.HasPrefix(s, "sigil dev\n") {
		t.Errorf("first line of version output: %q", strings.SplitN(s, "\n", 2)[0])
	}
	for _, f := range []string{"\nversion:", "\nrevision:", "\ncommit time:", "\nbuild time:", "\ngo:          " + runtime.Version()} {
		if !strings.Contains(s, f) {
			t.Errorf("version output lacks %q:\n%s", f, s)
		}
	}
}
