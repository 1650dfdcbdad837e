package guard

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/gcpauth"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms/gcpkmstest"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
)

// TestGuardCredentials: the guard's credentials are the enclave's own:
// at start it exchanges the launcher's attestation token for the
// provider's (a fake Security Token Service here), and it does not start
// when the exchange is refused (the attestation does not satisfy the
// provider's condition), naming the provider.
func TestGuardCredentials(t *testing.T) {
	w := newWorld(t)
	const wip = "projects/314159/locations/global/workloadIdentityPools/sigil-pool/providers/sigil-attestation"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "attestation_token")
	subject := gcpkmstest.WriteTokenFile(t, tokenFile)
	sts := gcpkmstest.NewSTS(t, gcpauth.AudiencePrefix+wip, subject, time.Hour)
	creds := []string{"--guard-wip-provider", wip, "--gcp-token-file", tokenFile, "--gcp-sts-url", sts.URL}

	e := w.enclave("enclave", false, creds...)
	if sts.Issued() != 1 {
		t.Fatalf("%d token exchanges at start, want 1", sts.Issued())
	}
	c := dial(t, e.Addr())
	baker := c.generate(enclavewire.KeyEd25519)
	if _, err := c.signWith(baker, rt.Block(rt.Mainnet, 1, 0, 1)); err != nil {
		t.Fatal(err)
	}

	sts.Refuse(http.StatusForbidden, "the attestation does not satisfy the provider's condition")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"--listen", "127.0.0.1:0", "--kms", "local", "--kms-key-file", w.kmsFile,
		"--guard-policy", w.policy, "--guard-firestore-project", w.project}, creds...)...)
	cmd.Env = append(cmd.Environ(), w.fs.Env()...)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || strings.Contains(string(out), "listening on") {
		t.Fatalf("an enclave started with its guard's credentials refused: %v\n%s", err, out)
	}
	for _, want := range []string{wip, "403", "condition"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the refused start does not name %q:\n%s", want, out)
		}
	}
}
