package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestReadFallsBackToLinkTimeValues(t *testing.T) {
	defer func(v, b, bt, r, ct string) { Version, Branch, BuildTime, Revision, CommitTime = v, b, bt, r, ct }(Version, Branch, BuildTime, Revision, CommitTime)
	Version, Branch, BuildTime, Revision, CommitTime = "v1.2.3", "main", "2026-01-02T03:04:05Z", "0123abcd", "2026-01-01T00:00:00Z"
	i := Read()
	// A test binary carries no VCS stamp, so the fallbacks apply.
	if i.Revision != "0123abcd" || i.Time != "2026-01-01T00:00:00Z" {
		t.Errorf("revision %q, commit time %q: the -X fallbacks were not used", i.Revision, i.Time)
	}
	if i.Version != "v1.2.3" || i.Branch != "main" || i.BuildTime != "2026-01-02T03:04:05Z" {
		t.Errorf("version %q branch %q build time %q", i.Version, i.Branch, i.BuildTime)
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("go version %q, want %q", i.GoVersion, runtime.Version())
	}
	s := i.String()
	for _, want := range []string{"version:     v1.2.3\n", "revision:    0123abcd\n", "build time:  2026-01-02T03:04:05Z\n", "go:          " + runtime.Version() + "\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
}

func TestStringNamesUnknownFields(t *testing.T) {
	s := Info{Version: "(devel)"}.String()
	if !strings.Contains(s, "revision:    unknown\n") || !strings.Contains(s, "version:     (devel)\n") {
		t.Errorf("String():\n%s", s)
	}
}
