package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// daemonConfig writes a daemon configuration: the confidentialspace vault
// on addr, keys in keyFile, its own watermark directory under dir, and a
// policy letting pkh (when set) sign blocks, attestations and transactions.
func daemonConfig(t *testing.T, dir, addr, keyFile, pkh string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
vaults:
  cs:
    driver: confidentialspace
    config:
      host: %s
      port: %s
      wip_provider_path: x
      encryption_key_path: y
      storage:
        driver: file
        config: %s
`, dir, host, port, keyFile)
	if pkh != "" {
		cfg += fmt.Sprintf(`tezos:
  %s:
    allow:
      block: []
      attestation: []
      generic: [transaction]
`, pkh)
	}
	path := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestGuardDaemonPath: two daemons, each with its own watermarks (so
// neither knows what the other signed), share one guarded enclave. The
// enclave's guard is the second witness: the identical block asked of the
// second daemon gets the recorded signature (200), a conflicting one is
// refused by the guard and the daemon answers 409, and a transfer the
// daemons' policy allows but the guard's forbids is answered 403, with
// the guard's reason in the body.
func TestGuardDaemonPath(t *testing.T) {
	w := newWorld(t)
	e := w.enclave("enclave", false)
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	dirA, dirB := t.TempDir(), t.TempDir()
	keyFile := filepath.Join(dirA, "keys.json")
	cfgA := daemonConfig(t, dirA, e.Addr(), keyFile, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sigil, "-c", cfgA, "generate", "-v", "cs", "-t", "tz1").Output()
	if err != nil {
		t.Fatalf("sigil generate: %v", err)
	}
	pkh := strings.TrimSpace(string(out))
	cfgA = daemonConfig(t, dirA, e.Addr(), keyFile, pkh)
	cfgB := daemonConfig(t, dirB, e.Addr(), keyFile, pkh)
	a := harness.StartDaemon(t, harness.DaemonOptions{Name: "sigil-a", Binary: sigil, Config: cfgA})
	b := harness.StartDaemon(t, harness.DaemonOptions{Name: "sigil-b", Binary: sigil, Config: cfgB})
	client := &http.Client{Timeout: 30 * time.Second}
	hash, err := tezos.ParsePublicKeyHash(pkh)
	if err != nil {
		t.Fatal(err)
	}
	post := func(d *harness.Daemon, msg []byte) harness.SignReply {
		t.Helper()
		r := harness.PostSign(client, d.API+"/keys/"+pkh, msg)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}

	block := rt.Block(rt.Mainnet, 10, 0, 1)
	first := post(a, block)
	if first.Status != http.StatusOK {
		t.Fatalf("the first block: %d %s", first.Status, first.Body)
	}
	if got := post(b, block); got.Status != http.StatusOK || got.Signature != first.Signature {
		t.Fatalf("the identical block through the other daemon: %d %s, want the recorded %s", got.Status, got.Body, first.Signature)
	}
	if doc := w.recorded(rt.Mainnet, "block", mustPK(t, client, a, pkh)); doc["signature"] != first.Signature {
		t.Fatalf("the guard recorded %v, the daemon returned %s", doc["signature"], first.Signature)
	}
	if r := post(a, rt.Block(rt.Mainnet, 11, 0, 1)); r.Status != http.StatusOK {
		t.Fatalf("the next block: %d %s", r.Status, r.Body)
	}
	r := post(b, rt.Block(rt.Mainnet, 11, 0, 2))
	if r.Status != http.StatusConflict || !strings.Contains(r.Body, "guard") {
		t.Fatalf("a conflicting block through the daemon that did not see the first: %d %s, want 409 from the guard", r.Status, r.Body)
	}
	transfer := rt.Generic(3, rt.Transaction(hash, rt.Originated(4), 5, 0))
	r = post(a, transfer)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Body, "guard") {
		t.Fatalf("a transfer the daemon allows and the guard forbids: %d %s, want 403 from the guard", r.Status, r.Body)
	}
}

func mustPK(t *testing.T, c *http.Client, d *harness.Daemon, pkh string) tezos.PublicKey {
	t.Helper()
	resp, err := c.Get(d.API + "/keys/" + pkh)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		PublicKey string `json:"public_key"`
	}
	if err := jsonDecode(resp, &v); err != nil {
		t.Fatal(err)
	}
	pk, err := tezos.ParsePublicKey(v.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
