package harness

import (
	"os"
	"os/exec"
	"testing"
)

// Tool returns the path of an external program the test needs (promtool,
// prometheus, buildah, …). If it is missing, the test fails when the CI
// environment variable is set (.ci/run installs it) and is skipped
// otherwise, with a message naming how to install it.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (.ci/run installs it: %s): %v", name, install, err)
	}
	t.Skipf("%s is not installed (%s); the CI environment variable is not set, so skipping", name, install)
	return ""
}
