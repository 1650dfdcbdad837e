package guard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/integration/harness"
)

// TestGuardDocsPolicy: the policies of the deployment guide's guard
// section (its JSON example and the GUARD_POLICY it pins in the provider's
// condition) are accepted by the guard as they are written.
func TestGuardDocsPolicy(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "deploy-confidential-space.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "## 14. The enclave's guard")
	if !ok {
		t.Fatal("the guide has no guard section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var policies []string
	if _, rest, ok := strings.Cut(sec, "```json\n"); ok {
		js, _, _ := strings.Cut(rest, "```")
		policies = append(policies, js)
	}
	if _, rest, ok := strings.Cut(sec, "GUARD_POLICY='"); ok {
		js, _, _ := strings.Cut(rest, "'")
		policies = append(policies, js)
	}
	if len(policies) != 2 {
		t.Fatalf("found %d policies in the guard section, want 2", len(policies))
	}
	for _, p := range policies {
		if _, err := guard.ParseRules([]byte(p)); err != nil {
			t.Fatalf("the guide's policy %s: %v", p, err)
		}
	}
}
