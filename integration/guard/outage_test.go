package guard

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/integration/harness"
)

// TestGuardStateOutage: with its database down, the guard refuses every
// consensus request it cannot record (unavailable, within its timeout, and
// again after staying idle longer than that timeout), yet answers the
// identical repeat of a mark it recorded from what it knows; once the
// database is back, signing resumes. An enclave does not start while its
// guard's database cannot be reached.
func TestGuardStateOutage(t *testing.T) {
	fs := harness.StartPrivateFirestore(t)
	w := newWorldOn(t, fs)
	e := w.enclave("enclave", false, "--guard-timeout", "1s")
	c := dial(t, e.Addr())
	baker := c.generate(enclavewire.KeyEd25519)
	first := rt.Block(rt.Mainnet, 1, 0, 1)
	sig, err := c.signWith(baker, first)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = c.signWith(baker, rt.Block(rt.Mainnet, 2, 0, 1))
	refused(t, "a block with the database down", err, domain.KindUnavailable, "no signature leaves")
	if got, err := c.signWith(baker, first); err != nil || got.String() != sig.String() {
		t.Fatalf("the identical repeat of a recorded block, database down: %v %v", got, err)
	}
	time.Sleep(1500 * time.Millisecond) // idle longer than the guard's timeout
	_, err = c.sign(baker, rt.Block(rt.Mainnet, 2, 0, 2))
	refused(t, "a block after an idle outage", err, domain.KindUnavailable)

	// No enclave starts on a database it cannot reach.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, "--listen", "127.0.0.1:0", "--kms", "local", "--kms-key-file", w.kmsFile,
		"--guard-policy", w.policy, "--guard-firestore-project", w.project, "--guard-start-timeout", "3s")
	cmd.Env = append(cmd.Environ(), fs.Env()...)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "guard state unreachable") || strings.Contains(string(out), "listening on") {
		t.Fatalf("an enclave started with its guard's database down: %v\n%s", err, out)
	}

	if err := fs.Restart(); err != nil {
		t.Fatal(err)
	}
	// The emulator lost its data; a new mark is recorded on the empty
	// database (the guard's cached document state is stale and refreshed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = c.signWith(baker, rt.Block(rt.Mainnet, 3, 0, 1))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("signing did not resume once the database was back: %v", err)
	}
}
