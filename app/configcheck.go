package app

import (
	"fmt"
	"strings"

	"github.com/sigil-signer/sigil/adapters/config"
)

// noVaults is the daemon's refusal of a configuration without vaults.
func noVaults(cfg *config.Config) error {
	return cfg.Errorf("vaults", "no vaults configured: add a `vaults:` section (see docs/configuration.md), or run `sigil serve --dev`")
}

// ConfigSummary describes a configuration that passed every check.
type ConfigSummary struct {
	Path      string
	Vaults    []string // "name (driver)", by name
	Keys      int      // keys named by policies (the tezos section)
	Watermark string   // the watermark backend's driver
}

func (s ConfigSummary) String() string {
	return fmt.Sprintf("OK: %s: %d vault(s): %s; %d key(s) named by policies; watermark backend %s",
		s.Path, len(s.Vaults), strings.Join(s.Vaults, ", "), s.Keys, s.Watermark)
}

// CheckConfigAll checks the configuration as the daemon does before it
// opens anything (`sigil config check`): it loads the file (a syntax or
// field error stops there, as it stops the daemon), then checks every
// policy, every vault with its key storage, the watermark backend and the
// state directory, and returns every problem found, or a summary when
// there is none. Nothing is opened, created or dialled.
func CheckConfigAll(opts Options) (ConfigSummary, []error) {
	cfg, err := config.Load(opts.ConfigPath, opts.AllowMissingConfig, opts.BaseDir)
	if err != nil {
		return ConfigSummary{}, []error{err}
	}
	var problems []error
	if len(cfg.Vaults) == 0 {
		problems = append(problems, noVaults(cfg))
	}
	problems = append(problems, configProblems(cfg, opts)...)
	if len(problems) > 0 {
		return ConfigSummary{}, problems
	}
	sum := ConfigSummary{Path: opts.ConfigPath, Keys: len(cfg.Tezos), Watermark: "file"}
	for _, name := range keys(cfg.Vaults) {
		sum.Vaults = append(sum.Vaults, fmt.Sprintf("%s (%s)", name, cfg.Vaults[name].Driver))
	}
	if cfg.Watermark != nil {
		sum.Watermark = cfg.Watermark.Driver
	}
	return sum, nil
}
