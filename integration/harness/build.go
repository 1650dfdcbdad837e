package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type buildResult struct {
	once sync.Once
	path string
	err  error
	took time.Duration
}

var (
	buildMu sync.Mutex
	builds  = map[string]*buildResult{}
)

// BuildBinary builds a package of this module (for example
// "./cmd/sigil-enclave", relative to the module root) once per test binary
// and returns the executable's path. A build failure fails the test with
// the compiler's output.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	SkipIfShort(t)
	buildMu.Lock()
	r, ok := builds[pkg]
	if !ok {
		r = &buildResult{}
		builds[pkg] = r
	}
	buildMu.Unlock()
	r.once.Do(func() {
		start := time.Now()
		r.path, r.err = build(pkg)
		r.took = time.Since(start)
	})
	if r.err != nil {
		t.Fatalf("harness: %v", r.err)
	}
	return r.path
}

func build(pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := tempRoot("sigil-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(strings.TrimSuffix(pkg, "/")))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out, nil
}

// ModuleRoot returns the directory holding this module's go.mod, found by
// walking up from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/sigil-signer/sigil\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of github.com/sigil-signer/sigil above the working directory")
		}
		dir = parent
	}
}
