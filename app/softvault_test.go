package app_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// forgedTransfer is a forged transaction (magic byte 0x03), as Taquito's
// verifySignature documentation signs it.
const forgedTransfer = "03d0c10e3ed11d7c6e3357f6ef335bab9e8f2bd54d0ce20c482e241191a6e4b8ce6c01be917311d9ac46959750e405d57e268e2ed9e174a80794fbd504e12a4a000141eb3781afed2f69679ff2bbe1c5375950b0e40d00ff000000005e05050505050507070100000024747a32526773486e74516b72794670707352466261313652546656503539684b72654a4d07070100000024747a315a6672455263414c42776d4171776f6e525859565142445439426a4e6a42484a750001"

// TestSignatoryFileAndMemVaults: a configuration with Signatory's `file` and
// `mem` vault sections, verbatim, runs the daemon; both vaults sign over
// the HTTP API and /healthz is ready.
func TestSignatoryFileAndMemVaults(t *testing.T) {
	dir := t.TempDir()
	fileKey, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	memKey, _ := tezos.GeneratePrivateKey(tezos.P256, nil)
	filePK, _ := fileKey.Public()
	memPK, _ := memKey.Public()
	secret := filepath.Join(dir, "secret.json")
	b, _ := json.Marshal([]map[string]string{{"name": "baker", "value": "unencrypted:" + fileKey.Base58()}})
	if err := os.WriteFile(secret, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
vaults:
  local_secret:
    driver: file
    config:
      file: %s
  mem:
    driver: mem
    config:
      - %s
watermark:
  driver: mem
tezos:
  %s:
    allow:
      generic: [transaction]
  %s:
    allow:
      generic: [transaction]
`, dir, secret, memKey.Base58(), filePK.Hash(), memPK.Hash())
	path := filepath.Join(dir, "signatory.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var ls *app.Listeners
	fxApp := fx.New(app.Core(app.Options{ConfigPath: path, Stderr: os.Stderr, LogLevel: "warn"}), app.Serve(), fx.Populate(&ls), fx.NopLogger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fxApp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer fxApp.Stop(context.Background())

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + ls.Utility.String() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	msg := mustHex(t, forgedTransfer)
	for _, pk := range []tezos.PublicKey{filePK, memPK} {
		resp, err := http.Post("http://"+ls.API.String()+"/keys/"+pk.Hash().String(), "application/json", strings.NewReader(`"`+forgedTransfer+`"`))
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Signature string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: status %d, %v", pk.Hash(), resp.StatusCode, err)
		}
		sig, err := tezos.ParseSignature(out.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if sig.Type == 0 {
			sig.Type = pk.Type
		}
		if err := enclavetest.Verify(pk, msg, sig, 2); err != nil {
			t.Fatalf("%s: %v", pk.Hash(), err)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
