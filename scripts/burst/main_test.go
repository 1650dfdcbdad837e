package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/scripts/internal/rig"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestBurstScript runs the script on a small burst (4 delegates, 2
// bursts), so that the command docs/performance.md gives keeps working:
// every signature verified, every figure computed.
func TestBurstScript(t *testing.T) {
	dir := t.TempDir()
	for _, pkg := range []string{"./cmd/sigil", "./cmd/sigil-enclave"} {
		if err := os.Symlink(harness.BuildBinary(t, pkg), filepath.Join(dir, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	r, err := rig.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(r, 4, 2, 2, 100*time.Millisecond, "file")
	r.Close(err != nil)
	if err != nil {
		t.Fatalf("%v (logs in %s)", err, r.Dir)
	}
	if res.Failed != 0 || len(res.BurstRatio) != 2 || res.Ratio <= 0 || res.LimitMS <= 0 || res.SignUS <= 0 || res.VerifyUS <= 0 {
		t.Fatalf("incomplete figures: %+v", res)
	}
	res.print(os.Stdout)
}
