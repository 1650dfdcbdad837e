package signatorydiff

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Pinned versions, checked in the built binary (go version -m): the
// upstream module must build exactly these, not what minimum version
// selection might pick after an edit of its go.mod.
var pinned = map[string]string{
	"github.com/ecadlabs/signatory": "v1.4.0",
	"github.com/ecadlabs/gotez/v2":  "v2.4.3",
	"github.com/ecadlabs/goblst":    "v1.1.0",
}

type signatoryBins struct {
	serve, cli string
}

// buildSignatory builds Signatory's cmd/signatory and cmd/signatory-cli in
// the upstream module (into dir) and checks the versions they embed. When
// the module cannot be downloaded (no module proxy), the test is skipped,
// or fails under CI=true; a build failure always fails.
func buildSignatory(t *testing.T, dir string) signatoryBins {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	upstream := filepath.Join(root, "integration", "signatorydiff", "upstream")
	// The upstream go.mod and go.sum are used as checked in (readonly),
	// whatever a go.work above says.
	env := append(os.Environ(), "GOWORK=off", strings.TrimSpace("GOFLAGS="+os.Getenv("GOFLAGS")+" -mod=readonly"))
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = upstream, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v", timeout)
		}
		return out.String(), err
	}
	start := time.Now()
	if out, err := run(10*time.Minute, "mod", "download"); err != nil {
		msg := fmt.Sprintf("cannot download Signatory's module and its dependencies (go mod download in %s): %v\n%s", upstream, err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + "\nthe CI environment variable is not set, so skipping (the Go module proxy must serve github.com/ecadlabs/signatory@v1.4.0)")
	}
	var b signatoryBins
	for _, p := range []struct {
		pkg string
		out *string
	}{{"github.com/ecadlabs/signatory/cmd/signatory", &b.serve}, {"github.com/ecadlabs/signatory/cmd/signatory-cli", &b.cli}} {
		*p.out = filepath.Join(dir, filepath.Base(p.pkg))
		if out, err := run(10*time.Minute, "build", "-o", *p.out, p.pkg); err != nil {
			t.Fatalf("building %s in %s: %v\n%s", p.pkg, upstream, err, out)
		}
		out, err := run(time.Minute, "version", "-m", *p.out)
		if err != nil {
			t.Fatalf("go version -m %s: %v\n%s", *p.out, err, out)
		}
		for mod, want := range pinned {
			if got := embeddedVersion(out, mod); got != want {
				t.Fatalf("%s was built with %s %q, want %s (pinned in %s/go.mod):\n%s", p.pkg, mod, got, want, upstream, out)
			}
		}
	}
	t.Logf("built Signatory %s (gotez %s, goblst %s) in %v", pinned["github.com/ecadlabs/signatory"],
		pinned["github.com/ecadlabs/gotez/v2"], pinned["github.com/ecadlabs/goblst"], time.Since(start).Round(time.Millisecond))
	return b
}

// embeddedVersion finds mod's version in `go version -m` output (the main
// module on a "mod" line, dependencies on "dep" lines).
func embeddedVersion(out, mod string) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[0] == "mod" || f[0] == "dep") && f[1] == mod {
			return f[2]
		}
	}
	return ""
}
