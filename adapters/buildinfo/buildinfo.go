// Package buildinfo describes the running binary: module path and version,
// VCS revision, commit time and whether the tree was modified, build time,
// Go version. It reads them from the Go build information embedded by
// `go build`; the few values the build information cannot carry (a release
// version for a binary built from a checkout, the branch, the build time)
// can be set with -ldflags "-X github.com/sigil-signer/sigil/adapters/buildinfo.Version=…".
// Revision and CommitTime set that way are used only when the build
// information has none (`go build` stamps them only inside a git clone, and
// not with -buildvcs=false or from a git worktree): scripts/build-release.sh
// sets them from git for that case.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Set at link time with -ldflags -X (all optional).
var (
	Version   string // overrides the module version (e.g. a release tag)
	Branch    string
	BuildTime string // RFC 3339
	// Fallbacks for a build without VCS stamping (see the package comment).
	Revision   string // "-dirty" appended by the builder when modified
	CommitTime string // RFC 3339
)

// Info is what is known of this binary; unknown fields are empty.
type Info struct {
	Path      string // main module path
	Version   string // module version or -X Version ("(devel)" for a checkout build)
	Checksum  string // module checksum (go install of a released version)
	Revision  string // VCS revision, "-dirty" appended when modified
	Branch    string
	Time      string // VCS commit time
	BuildTime string
	GoVersion string
}

// Read returns the build information of the running binary.
func Read() Info {
	var i Info
	if bi, ok := debug.ReadBuildInfo(); ok {
		i.Path, i.Version, i.Checksum, i.GoVersion = bi.Main.Path, bi.Main.Version, bi.Main.Sum, bi.GoVersion
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.time":
				i.Time = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && i.Revision != "" {
			i.Revision += "-dirty"
		}
	}
	if Version != "" {
		i.Version = Version
	}
	if i.Revision == "" {
		i.Revision = Revision
	}
	if i.Time == "" {
		i.Time = CommitTime
	}
	i.Branch, i.BuildTime = Branch, BuildTime
	return i
}

// String renders i on one line per field, for `version` commands.
func (i Info) String() string {
	var b strings.Builder
	row := func(k, v string) {
		if v == "" {
			v = "unknown"
		}
		fmt.Fprintf(&b, "%-12s %s\n", k+":", v)
	}
	row("version", i.Version)
	row("revision", i.Revision)
	if i.Branch != "" {
		row("branch", i.Branch)
	}
	row("commit time", i.Time)
	row("build time", i.BuildTime)
	row("go", i.GoVersion)
	row("module", i.Path)
	return b.String()
}
