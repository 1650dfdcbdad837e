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

// binDir is a directory holding sigil and sigil-enclave built from this
// tree, as the script expects.
func binDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, pkg := range []string{"./cmd/sigil", "./cmd/sigil-enclave"} {
		if err := os.Symlink(harness.BuildBinary(t, pkg), filepath.Join(dir, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSoakScript runs both modes of the script, shortened (8 keys, idle 6 ×
// a 400 ms rpc_timeout), so that the command docs/performance.md gives
// keeps working; each mode fails when a count moves.
func TestSoakScript(t *testing.T) {
	bin := binDir(t)
	for _, mode := range []string{"idle", "restart"} {
		t.Run(mode, func(t *testing.T) {
			r, err := rig.New(bin)
			if err != nil {
				t.Fatal(err)
			}
			s := &soak{r: r, keys: 8, conns: 2, rpcTimeout: 400 * time.Millisecond}
			if mode == "idle" {
				err = s.idle(6*s.rpcTimeout, 2*s.rpcTimeout)
			} else {
				err = s.restart(6 * s.rpcTimeout)
			}
			r.Close(err != nil)
			if err != nil {
				t.Fatalf("%s: %v (logs in %s)", mode, err, r.Dir)
			}
		})
	}
}
