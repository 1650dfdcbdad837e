package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryDriverHasAChecker: a driver without a Checker would have its
// section validated only when it is opened, after other vaults may have
// been dialled.
func TestEveryDriverHasAChecker(t *testing.T) {
	for name := range vaultDrivers {
		if _, ok := vaultCheckers[name]; !ok {
			t.Errorf("vault driver %q has no Checker in vaultCheckers", name)
		}
	}
	for name := range storageDrivers {
		if _, ok := storageCheckers[name]; !ok {
			t.Errorf("storage driver %q has no Checker in storageCheckers", name)
		}
	}
	for name := range watermarkDrivers {
		if _, ok := watermarkCheckers[name]; !ok {
			t.Errorf("watermark driver %q has no Checker in watermarkCheckers", name)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

const goodVault = `vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      wip_provider_path: p
      encryption_key_path: k
`

// TestCheckConfigSections: an error in any section is found by CheckConfig,
// which opens nothing (the base directory is not created).
func TestCheckConfigSections(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"ok":                 {goodVault, ""},
		"policy":             {goodVault + "tezos:\n  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:\n    allow:\n      generic: [transfer]\n", `unknown operation kind "transfer"`},
		"request kind":       {goodVault + "tezos:\n  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:\n    allow:\n      blocks:\n", `unknown request kind "blocks"`},
		"vault field":        {strings.Replace(goodVault, "host:", "hots:", 1), "hots"},
		"vault missing host": {strings.Replace(goodVault, "host: 127.0.0.1", "port: \"2000\"", 1), "missing host"},
		"vault port":         {strings.Replace(goodVault, "host: 127.0.0.1", "host: 127.0.0.1\n      port: \"99999\"", 1), "invalid port"},
		"vault driver":       {strings.Replace(goodVault, "confidentialspace", "azure", 1), `unknown driver "azure"`},
		"storage driver":     {goodVault + "      storage:\n        driver: s3\n", `unknown storage driver "s3"`},
		"storage config":     {goodVault + "      storage:\n        driver: gcp\n        config:\n          project: p\n", "missing required field database"},
		"storage field":      {goodVault + "      storage:\n        driver: file\n        config: {path: x}\n", "single path string"},
		"watermark driver":   {goodVault + "watermark:\n  driver: redis\n", `unknown driver "redis"`},
		"watermark config":   {goodVault + "watermark:\n  driver: gcp\n  config:\n    database: d\n", "missing required field project"},
		"watermark field":    {goodVault + "watermark:\n  driver: mem\n  config:\n    size: 3\n", "size"},
		"watermark aws":      {goodVault + "watermark:\n  driver: aws\n  config:\n    table: x\n", "not a valid DynamoDB table name"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base")
			cfg := filepath.Join(dir, "sigil.yaml")
			writeFile(t, cfg, "base_dir: "+base+"\n"+tc.yaml)
			err := CheckConfig(Options{ConfigPath: cfg})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(base); !os.IsNotExist(err) {
				t.Fatalf("checking the configuration created %s", base)
			}
		})
	}
}

func TestStateDirs(t *testing.T) {
	root := t.TempDir()
	dirs := StateDirs{Signatory: filepath.Join(root, "signatory"), Sigil: filepath.Join(root, "sigil")}
	noBase := filepath.Join(root, "nobase.yaml")
	writeFile(t, noBase, goodVault)
	withBase := filepath.Join(root, "base.yaml")
	writeFile(t, withBase, "base_dir: "+dirs.Signatory+"\n"+goodVault)
	check := func(cfg, flag string) error {
		t.Helper()
		return CheckConfig(Options{ConfigPath: cfg, BaseDir: flag, StateDirs: &dirs})
	}

	// Neither directory exists: nothing to protect.
	if err := check(noBase, ""); err != nil {
		t.Fatal(err)
	}
	// Signatory's exists, Sigil's does not, no base_dir: refused, naming
	// the base_dir to set.
	if err := os.Mkdir(dirs.Signatory, 0o700); err != nil {
		t.Fatal(err)
	}
	err := check(noBase, "")
	if err == nil {
		t.Fatal("started with the default base directory next to Signatory's state")
	}
	for _, want := range []string{"base_dir: " + dirs.Signatory, "--base-dir " + dirs.Signatory, dirs.Sigil} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// An explicit base_dir, or --base-dir, is accepted.
	if err := check(withBase, ""); err != nil {
		t.Fatalf("explicit base_dir refused: %v", err)
	}
	if err := check(noBase, dirs.Signatory); err != nil {
		t.Fatalf("--base-dir refused: %v", err)
	}
	// Sigil's own directory exists too: Sigil has state of its own.
	if err := os.Mkdir(dirs.Sigil, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := check(noBase, ""); err != nil {
		t.Fatalf("refused although Sigil's base directory exists: %v", err)
	}
}
