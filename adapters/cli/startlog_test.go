package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDevReadyAfterItsKeys: `serve --dev` on a fresh directory said
// `signer ready … keys=0` before it created its keys. It says ready once
// they exist, with their count per vault, after the start line naming the
// version, the configuration, the state directory and the watermark
// backend.
func TestDevReadyAfterItsKeys(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sigil.yaml"), []byte("server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, done := startRoot(t, "serve", "--dev", "--base-dir", dir)
	waitReady(t, stderr, done)
	log := stderr.String()
	ready := strings.Index(log, `msg="signer ready"`)
	if n := strings.Count(log[:ready], `msg="key generated"`); n != 4 {
		t.Errorf("%d keys generated before the ready line, want 4:\n%s", n, log)
	}
	for _, re := range []string{
		`msg="sigil starting" version=\S+ revision=\S+ config=` + regexp.QuoteMeta(filepath.Join(dir, "sigil.yaml")) + ` base_dir=` + regexp.QuoteMeta(dir) +
			` base_dir_from=--base-dir watermark=file watermark_location=` + regexp.QuoteMeta(filepath.Join(dir, "watermark_v2")) + ` vaults="dev \(confidentialspace\)"`,
		`msg="signer ready" address=127\.0\.0\.1:[0-9]+ utility_address=127\.0\.0\.1:[0-9]+ keys=4 vaults="dev \(confidentialspace\): 4 keys" version=`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("no line matching %s in\n%s", re, log)
		}
	}
	if strings.Contains(log, "keys=0") && regexp.MustCompile(`msg="signer ready".*keys=0`).MatchString(log) {
		t.Errorf("ready with no keys:\n%s", log)
	}
	if strings.Count(log, `msg="signer ready"`) != 1 {
		t.Errorf("not one ready line:\n%s", log)
	}
}
