package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEnclaveDependsOnNoMockAndNoConfidentialSpace: the enclave's binary is
// built from the enclave's own packages (domain/enclave,
// adapters/enclaveserver, app/enclaveapp, …): none of them is a package
// named mock (no production path through one), and none is the daemon's
// Confidential Space backend (adapters/confidentialspace and below).
func TestEnclaveDependsOnNoMockAndNoConfidentialSpace(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Name}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/sigil-signer/sigil/"
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, name, _ := strings.Cut(line, " ")
		seen[path] = true
		last := path[strings.LastIndex(path, "/")+1:]
		if strings.Contains(strings.ToLower(name), "mock") || strings.Contains(strings.ToLower(last), "mock") {
			t.Errorf("sigil-enclave depends on %s (package %s): a package named mock", path, name)
		}
		if path == module+"adapters/confidentialspace" || strings.HasPrefix(path, module+"adapters/confidentialspace/") {
			t.Errorf("sigil-enclave depends on %s", path)
		}
	}
	for _, p := range []string{"domain/enclave", "ports/enclaveside", "adapters/enclaveserver", "adapters/enclavewire", "app/enclaveapp", "adapters/kms/gcpkms"} {
		if !seen[module+p] {
			t.Errorf("sigil-enclave does not depend on %s: the check is not looking at the enclave", p)
		}
	}
}
