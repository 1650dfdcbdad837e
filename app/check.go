package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigil-signer/sigil/adapters/confidentialspace"
	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/nitro"
	"github.com/sigil-signer/sigil/adapters/softvault"
	"github.com/sigil-signer/sigil/adapters/storage"
	storagedynamodb "github.com/sigil-signer/sigil/adapters/storage/dynamodb"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/adapters/storage/firestore"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/adapters/watermark"
	wmdynamodb "github.com/sigil-signer/sigil/adapters/watermark/dynamodb"
	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	wmfirestore "github.com/sigil-signer/sigil/adapters/watermark/firestore"
	wmmem "github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/adapters/watermark/witness"
)

// vaultCheckers, storageCheckers and watermarkCheckers validate each
// driver's configuration section without opening anything; every driver of
// vaultDrivers, storageDrivers and watermarkDrivers has one (a test checks).
var (
	vaultCheckers = map[string]vault.Checker{
		"confidentialspace": confidentialspace.CheckVault,
		"nitro":             nitro.CheckVault,
		"file":              softvault.CheckFile,
		"mem":               softvault.CheckMem,
	}
	storageCheckers = map[string]storage.Checker{
		"file":      file.Check,
		"gcp":       firestore.Check,
		"firestore": firestore.Check,
		"aws":       storagedynamodb.Check,
		"dynamodb":  storagedynamodb.Check,
	}
	watermarkCheckers = map[string]watermark.Checker{
		"file":      wmfile.Check,
		"mem":       wmmem.Check,
		"gcp":       wmfirestore.Check,
		"firestore": wmfirestore.Check,
		"aws":       wmdynamodb.Check,
	}
)

// StateDirs are the default state directories of Signatory and Sigil, which
// the start-up check compares (see checkStateDirs).
type StateDirs struct {
	Signatory string
	Sigil     string
}

// DefaultStateDirs are Signatory's and Sigil's default base directories.
var DefaultStateDirs = StateDirs{Signatory: "/var/lib/signatory", Sigil: config.DefaultBaseDir}

// CheckConfig loads and validates the whole configuration as every verb
// does before it opens anything: the file, the signing policies, every
// vault, key storage and watermark section, and the state directory check.
// Nothing is opened, created or dialled.
func CheckConfig(opts Options) error {
	cfg, err := config.Load(opts.ConfigPath, opts.AllowMissingConfig, opts.BaseDir)
	if err != nil {
		return err
	}
	return checkConfig(cfg, opts)
}

// checkConfig validates what config.Load cannot: the policies (with their
// warnings discarded: the signing service logs them), each driver section
// through its driver's Checker, and the state directory. It opens nothing.
// Every problem found is reported, one per line.
func checkConfig(cfg *config.Config, opts Options) error {
	return errors.Join(configProblems(cfg, opts)...)
}

// configProblems is every problem checkConfig finds, in the order of the
// sections: the policies by address, the vaults by name, the watermark
// backend, the state directory.
func configProblems(cfg *config.Config, opts Options) []error {
	var out []error
	discard := slog.New(slog.DiscardHandler)
	for _, pkh := range keys(cfg.Tezos) {
		if _, err := keyPolicy(cfg, pkh, discard); err != nil {
			out = append(out, err)
		}
	}
	for _, name := range keys(cfg.Vaults) {
		vc := cfg.Vaults[name]
		if _, ok := vaultDrivers[vc.Driver]; !ok {
			out = append(out, unknownDriver(cfg, "vaults."+name+".driver", "driver", vc.Driver, keys(vaultDrivers)))
			continue
		}
		check, ok := vaultCheckers[vc.Driver]
		if !ok {
			continue // validated when opened
		}
		section := "vaults." + name + ".config"
		var rec recorder
		env := vault.Env{BaseDir: cfg.BaseDir, CheckStorage: checkStorage(cfg, section+".storage")}
		if err := check(name, rec.wrap(vc.Decoder()), env); err != nil {
			out = append(out, sectionError(cfg, section, err, &rec))
		}
	}
	driver, decode := "file", (func(any) error)(nil)
	if cfg.Watermark != nil {
		driver, decode = cfg.Watermark.Driver, cfg.Watermark.Decoder()
	}
	if _, ok := watermarkDrivers[driver]; !ok {
		out = append(out, unknownDriver(cfg, "watermark.driver", "driver", driver, keys(watermarkDrivers)))
	} else if check, ok := watermarkCheckers[driver]; ok {
		var rec recorder
		if err := check(rec.wrap(decode), watermark.Env{BaseDir: cfg.BaseDir}); err != nil {
			out = append(out, sectionError(cfg, "watermark.config", err, &rec))
		}
	}
	dirs := DefaultStateDirs
	if opts.StateDirs != nil {
		dirs = *opts.StateDirs
	}
	if err := checkStateDirs(cfg, dirs); err != nil {
		out = append(out, err)
	}
	return out
}

// checkStorage checks the key storage section at field (a vault's
// storage); its errors name their place in the configuration already, so
// that the vault's driver may wrap them in its words.
func checkStorage(cfg *config.Config, field string) vault.StorageChecker {
	return func(driver string, decode func(any) error) error {
		if driver == "" {
			driver = "file"
		}
		if _, ok := storageDrivers[driver]; !ok {
			return unknownDriver(cfg, field+".driver", "storage driver", driver, keys(storageDrivers))
		}
		if check, ok := storageCheckers[driver]; ok {
			var rec recorder
			if err := check(rec.wrap(decode), storage.Env{BaseDir: cfg.BaseDir}); err != nil {
				return sectionError(cfg, field+".config", err, &rec)
			}
		}
		return nil
	}
}

// checkStateDirs refuses a state directory that holds no watermarks while
// another one the operator may have meant holds marks: starting there would
// mean empty watermarks, and signing again what was signed.
//
//   - Neither base_dir nor --base-dir: refused when Signatory's default
//     state directory exists and Sigil's does not, or holds no marks while
//     Signatory's does.
//   - --base-dir (which takes priority over base_dir, as in Signatory)
//     naming a directory without marks: refused when the file's base_dir,
//     or Signatory's default directory, holds marks. Naming both (the same
//     directory in the flag and the file) is the explicit choice.
//   - base_dir in the file alone is never second-guessed.
func checkStateDirs(cfg *config.Config, dirs StateDirs) error {
	if dirs.Signatory == "" && cfg.BaseDirFlag == "" {
		return nil
	}
	if !cfg.BaseDirSet {
		if !present(dirs.Signatory) {
			return nil
		}
		if present(dirs.Sigil) && (holdsMarks(dirs.Sigil) || !holdsMarks(dirs.Signatory)) {
			return nil
		}
		return fmt.Errorf("Signatory's state directory %s exists and Sigil's default base directory %s does not, or holds no watermarks: "+
			"starting here would mean empty watermarks next to Signatory's, and a risk of signing twice. "+
			"Set `base_dir: %s` in the configuration (or pass --base-dir %s) to use Signatory's keys and watermarks "+
			"(Sigil reads and migrates them), or set `base_dir: %s` explicitly to start apart from them",
			dirs.Signatory, dirs.Sigil, dirs.Signatory, dirs.Signatory, dirs.Sigil)
	}
	flag := cfg.BaseDirFlag
	if flag == "" || (cfg.FileBaseDir != "" && filepath.Clean(cfg.FileBaseDir) == filepath.Clean(flag)) || holdsMarks(flag) {
		return nil
	}
	if other := cfg.FileBaseDir; other != "" && holdsMarks(other) {
		return fmt.Errorf("--base-dir %s holds no watermarks, while %s (base_dir in the configuration) holds marks: --base-dir takes priority "+
			"(as in Signatory), and starting on %s would sign again what was signed from %s. "+
			"Remove --base-dir (or pass --base-dir %s) to keep those marks; or copy them into %s with every daemon stopped "+
			"(`cp -a %s/. %s/`, see docs/operations.md for a systemd state directory); or set `base_dir: %s` in the configuration too, to start apart from them",
			flag, other, flag, other, other, flag, other, flag, flag)
	}
	if sig := dirs.Signatory; sig != "" && filepath.Clean(sig) != filepath.Clean(flag) && holdsMarks(sig) {
		return fmt.Errorf("--base-dir %s holds no watermarks, while Signatory's state directory %s holds marks: "+
			"starting on %s would mean empty watermarks next to Signatory's, and a risk of signing twice. "+
			"Pass --base-dir %s to use Signatory's keys and watermarks (Sigil reads and migrates them); or copy them into %s with Signatory stopped "+
			"(`cp -a %s/. %s/`); or set `base_dir: %s` in the configuration too, to start apart from them",
			flag, sig, flag, sig, flag, sig, flag, flag)
	}
	return nil
}

// holdsMarks reports whether dir holds watermarks: a chain file of the file
// backend (or one of Signatory's older watermark directories), or a
// watermark witness that recorded marks. When it cannot tell (a permission
// problem, a corrupt witness), it answers true, the cautious answer for
// the directory not chosen (and no refusal for the one chosen).
func holdsMarks(dir string) bool {
	ents, err := os.ReadDir(filepath.Join(dir, wmfile.DirName))
	switch {
	case err == nil:
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".json") {
				return true
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return true
	}
	for _, old := range []string{"watermark_v1", "watermark"} {
		ents, err := os.ReadDir(filepath.Join(dir, old))
		if err == nil && len(ents) > 0 || err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	recs, _, err := witness.ReadRecords(dir)
	return err != nil || len(recs) > 0
}

// present reports whether path exists; an error other than "does not
// exist" (a permission problem) counts as present, the cautious answer.
func present(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
