package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
)

func TestEnclaveClientKeyAttest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "enclave-client.key")
	out, errOut, err := runCLI(t, "", "enclave-client-key", path)
	if err != nil {
		t.Fatal(err)
	}
	pin, perr := attestation.ParsePin(strings.TrimSpace(out))
	if perr != nil || !strings.Contains(errOut, "created") {
		t.Fatalf("stdout %q, stderr %q: %v", out, errOut, perr)
	}
	k, err := securechannel.LoadClientKey(path)
	if err != nil || k.Pin != pin {
		t.Fatalf("the file's pin is %s, printed %s (%v)", k.Pin, pin, err)
	}
	before, _ := os.ReadFile(path)
	out2, errOut2, err := runCLI(t, "", "enclave-client-key", path)
	after, _ := os.ReadFile(path)
	if err != nil || out2 != out || !strings.Contains(errOut2, "exists") || string(before) != string(after) {
		t.Fatalf("second run: %q %q %v (file changed: %v)", out2, errOut2, err, string(before) != string(after))
	}
	if _, _, err := runCLI(t, "", "enclave-client-key"); err == nil {
		t.Fatal("no FILE accepted")
	}
	if _, _, err := runCLI(t, "", "enclave-client-key", filepath.Join(t.TempDir(), "no", "such", "dir", "k")); err == nil {
		t.Fatal("a key in a missing directory")
	}
}
