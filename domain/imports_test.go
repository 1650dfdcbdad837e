package domain_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDomainImportsNoInfrastructure fails if any domain package (or anything
// it pulls in) imports an SDK, CBOR, HTTP, YAML, metrics or dependency
// injection package, or an adapter.
func TestDomainImportsNoInfrastructure(t *testing.T) {
	forbidden := []string{
		"net/http",
		"github.com/fxamacker/cbor",
		"go.uber.org/fx",
		"go.uber.org/dig",
		"cloud.google.com/",
		"google.golang.org/",
		"github.com/testcontainers/",
		"gopkg.in/yaml",
		"go.yaml.in/",
		"github.com/prometheus/",
		"github.com/spf13/",
		"github.com/golang-jwt/",
		"github.com/sigil-signer/sigil/adapters",
		"github.com/sigil-signer/sigil/app",
		"github.com/sigil-signer/sigil/cmd",
	}
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		for _, f := range forbidden {
			if strings.HasPrefix(p.ImportPath, f) {
				t.Errorf("domain depends on %s", p.ImportPath)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list returned only %d packages; the check is not looking at the domain", n)
	}
}
