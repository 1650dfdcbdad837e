package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/adapters/watermark/witness"
	"github.com/sigil-signer/sigil/domain/watermark"
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

// withMarks gives dir a chain file of the file watermark backend.
func withMarks(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "watermark_v2"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "watermark_v2", "NetXdQprcVkpaWU.json"), "{}\n")
}

// The state directory choice, case by case: --base-dir keeps Signatory's
// meaning (it wins over base_dir), but a flag naming a directory without
// marks while the file's base_dir, or Signatory's default directory, holds
// marks is refused naming both; the systemd unit's --base-dir
// /var/lib/sigil next to a configuration that says base_dir:
// /var/lib/signatory (the migration guide's advice) is that case.
func TestStateDirChoice(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fileBase   string // "" none; else a directory name under root
		flag       string
		marks      []string // directories holding marks
		sigExists  bool     // Signatory's default directory exists
		sigilExist bool     // Sigil's default directory exists
		want       string   // "" accepted; else a substring of the refusal
		alsoWant   string
	}{
		{name: "nothing anywhere", want: ""},
		{name: "default next to Signatory's (no Sigil dir)", sigExists: true, want: "base_dir: SIG"},
		{name: "default dir exists without marks, Signatory's has marks", sigExists: true, sigilExist: true, marks: []string{"signatory"}, want: "holds no watermarks"},
		{name: "default dir with marks", sigExists: true, sigilExist: true, marks: []string{"signatory", "sigil"}, want: ""},
		{name: "default dir exists, Signatory's without marks", sigExists: true, sigilExist: true, want: ""},
		{name: "flag to an empty dir, file base_dir holds marks", fileBase: "state", flag: "unit", marks: []string{"state"}, want: "--base-dir UNIT holds no watermarks, while STATE (base_dir in the configuration) holds marks", alsoWant: "cp -a STATE/. UNIT/"},
		{name: "flag to an empty dir, Signatory's holds marks", flag: "unit", sigExists: true, marks: []string{"signatory"}, want: "--base-dir UNIT holds no watermarks, while Signatory's state directory SIG holds marks"},
		{name: "flag and file name the same dir", fileBase: "unit", flag: "unit", sigExists: true, marks: []string{"signatory"}, want: ""},
		{name: "flag to a dir with marks", fileBase: "state", flag: "unit", marks: []string{"state", "unit"}, want: ""},
		{name: "flag, nothing has marks", fileBase: "state", flag: "unit", sigExists: true, want: ""},
		{name: "flag to Signatory's own dir", flag: "signatory", sigExists: true, marks: []string{"signatory"}, want: ""},
		{name: "file base_dir alone is never second-guessed", fileBase: "state", sigExists: true, marks: []string{"signatory"}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			at := func(name string) string { return filepath.Join(root, name) }
			dirs := StateDirs{Signatory: at("signatory"), Sigil: at("sigil")}
			if tc.sigExists {
				os.MkdirAll(dirs.Signatory, 0o700)
			}
			if tc.sigilExist {
				os.MkdirAll(dirs.Sigil, 0o700)
			}
			for _, m := range tc.marks {
				withMarks(t, at(m))
			}
			body := goodVault
			if tc.fileBase != "" {
				body = "base_dir: " + at(tc.fileBase) + "\n" + body
			}
			cfg := filepath.Join(root, "sigil.yaml")
			writeFile(t, cfg, body)
			flag := ""
			if tc.flag != "" {
				flag = at(tc.flag)
			}
			err := CheckConfig(Options{ConfigPath: cfg, BaseDir: flag, StateDirs: &dirs})
			expand := func(s string) string {
				return strings.NewReplacer("SIG", dirs.Signatory, "UNIT", at("unit"), "STATE", at("state")).Replace(s)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range []string{tc.want, tc.alsoWant} {
				if w != "" && !strings.Contains(err.Error(), expand(w)) {
					t.Errorf("error %q does not say %q", err, expand(w))
				}
			}
		})
	}
}

// A witness with marks counts as marks (the Firestore and DynamoDB
// backends keep none in the state directory).
func TestHoldsMarksWitness(t *testing.T) {
	dir := t.TempDir()
	if holdsMarks(dir) {
		t.Fatal("an empty directory holds marks")
	}
	w, err := witness.Open(dir, witness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if holdsMarks(dir) {
		t.Fatal("an empty witness holds marks")
	}
	k := watermark.Key{ChainID: "NetXdQprcVkpaWU", PKH: "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb", Kind: watermark.KindBlock}
	if err := w.Witness(context.Background(), watermark.Record{Key: k, Mark: watermark.Mark{Level: 3}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if !holdsMarks(dir) {
		t.Fatal("a witness with a mark holds no marks")
	}
}
