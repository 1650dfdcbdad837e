package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
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
		one := &config.Config{Tezos: map[string]*config.TezosPolicy{pkh: cfg.Tezos[pkh]}}
		if _, err := Policies(one, discard); err != nil {
			out = append(out, err)
		}
	}
	for _, name := range keys(cfg.Vaults) {
		vc := cfg.Vaults[name]
		if _, ok := vaultDrivers[vc.Driver]; !ok {
			out = append(out, fmt.Errorf("vaults.%s.driver: unknown driver %q (known: %s)", name, vc.Driver, strings.Join(keys(vaultDrivers), ", ")))
			continue
		}
		check, ok := vaultCheckers[vc.Driver]
		if !ok {
			continue // validated when opened
		}
		env := vault.Env{BaseDir: cfg.BaseDir, CheckStorage: checkStorage(cfg.BaseDir)}
		if err := check(name, vc.Decoder(), env); err != nil {
			out = append(out, fmt.Errorf("vaults.%s: %w", name, err))
		}
	}
	driver, decode := "file", (func(any) error)(nil)
	if cfg.Watermark != nil {
		driver, decode = cfg.Watermark.Driver, cfg.Watermark.Decoder()
	}
	if _, ok := watermarkDrivers[driver]; !ok {
		out = append(out, fmt.Errorf("watermark.driver: unknown driver %q (known: %s)", driver, strings.Join(keys(watermarkDrivers), ", ")))
	} else if check, ok := watermarkCheckers[driver]; ok {
		if err := check(decode, watermark.Env{BaseDir: cfg.BaseDir}); err != nil {
			out = append(out, fmt.Errorf("watermark (%s): %w", driver, err))
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

func checkStorage(baseDir string) vault.StorageChecker {
	return func(driver string, decode func(any) error) error {
		if driver == "" {
			driver = "file"
		}
		if _, ok := storageDrivers[driver]; !ok {
			return fmt.Errorf("unknown storage driver %q (known: %s)", driver, strings.Join(keys(storageDrivers), ", "))
		}
		if check, ok := storageCheckers[driver]; ok {
			return check(decode, storage.Env{BaseDir: baseDir})
		}
		return nil
	}
}

// checkStateDirs refuses to run with the default base directory when
// Signatory's default state directory exists and Sigil's does not: Sigil
// would otherwise start with empty watermarks (and no keys) next to
// Signatory's, and could sign again what Signatory signed. An explicit
// base_dir (or --base-dir) is never second-guessed.
func checkStateDirs(cfg *config.Config, dirs StateDirs) error {
	if cfg.BaseDirSet || dirs.Signatory == "" {
		return nil
	}
	if !present(dirs.Signatory) || present(dirs.Sigil) {
		return nil
	}
	return fmt.Errorf("Signatory's state directory %s exists and Sigil's default base directory %s does not: "+
		"starting here would mean empty watermarks next to Signatory's, and a risk of signing twice. "+
		"Set `base_dir: %s` in the configuration (or pass --base-dir %s) to use Signatory's keys and watermarks "+
		"(Sigil reads and migrates them), or set `base_dir: %s` explicitly to start apart from them",
		dirs.Signatory, dirs.Sigil, dirs.Signatory, dirs.Signatory, dirs.Sigil)
}

// present reports whether path exists; an error other than "does not
// exist" (a permission problem) counts as present, the cautious answer.
func present(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
