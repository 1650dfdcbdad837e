package cluster

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/integration/harness"
)

// TestGenerateDuringFirestoreOutage stops the (private) emulator and checks
// that `sigil generate` fails with an error naming Firestore key storage,
// reports no key, and writes nothing elsewhere.
func TestGenerateDuringFirestoreOutage(t *testing.T) {
	t.Parallel()
	fs := harness.StartPrivateFirestore(t)
	project := fs.NewProject(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	n := newNode(t, "outage", enc, fs.Env())
	n.storage = firestoreSection(project)

	before := n.generate("tz1") // the configuration works while Firestore is up
	if err := fs.Stop(); err != nil {
		t.Fatal(err)
	}
	r := n.run("", "--timeout", "5s", "generate", "-t", "tz2") // bounded: Firestore retries otherwise
	t.Logf("generate with Firestore down: exit %d after %v", r.code, r.took.Round(1e6))
	if r.code == 0 {
		t.Fatalf("generate succeeded with Firestore down; stdout %q", r.stdout)
	}
	if regexp.MustCompile(`tz[1-4][1-9A-HJ-NP-Za-km-z]{33}`).MatchString(r.stdout) {
		t.Fatalf("generate reported a key although storing failed: %q", r.stdout)
	}
	msg := strings.ToLower(r.stderr)
	for _, want := range []string{"firestore key storage", "project " + project, "storing key tz2"} {
		if !strings.Contains(msg, strings.ToLower(want)) {
			t.Fatalf("error should mention %q:\n%s", want, r.stderr)
		}
	}
	// Connection refused ends as Unavailable after the store's retries, or
	// as the operation deadline when the SDK keeps retrying on its own.
	if !strings.Contains(msg, "firestore unavailable") && !strings.Contains(msg, "no answer from firestore") {
		t.Fatalf("error should say that Firestore is unavailable or does not answer:\n%s", r.stderr)
	}
	if n.keyFileExists() {
		t.Fatal("the failed generate fell back to a local key file")
	}

	// The emulator comes back empty (it keeps no data): the daemon starts
	// with no key at all, neither the earlier one nor a half-written one.
	if err := fs.Restart(); err != nil {
		t.Fatal(err)
	}
	n.env = fs.Env()
	d := n.start()
	if d.keys != 0 {
		t.Fatalf("daemon loaded %d keys from the restarted emulator, want 0", d.keys)
	}
	if _, status := d.publicKey(t, before); status != 404 {
		t.Fatalf("GET /keys/%s: %d, want 404", before, status)
	}
}
