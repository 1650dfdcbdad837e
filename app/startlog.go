package app

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/ports"
)

// The start of a command is logged in two lines. "sigil starting", once
// the watermark store is open (every command that uses the state): the
// binary's version and revision, the configuration file, the state
// directory and where that choice came from, the watermark backend and its
// location, the vaults and their drivers. "signer ready", once the daemon
// has loaded every stored key (and, in development mode, created its
// keys): the same, with each vault's key count and the listeners; then a
// warning per key the policies name that no vault holds.

// startAttrs are the fields both start lines carry.
func startAttrs(cfg *config.Config) []slog.Attr {
	bi := buildinfo.Read()
	file := cfg.File
	if file == "" {
		file = "(none: defaults)"
	}
	return []slog.Attr{
		slog.String("version", orUnknown(bi.Version)), slog.String("revision", orUnknown(bi.Revision)),
		slog.String("config", file), slog.String("base_dir", cfg.BaseDir),
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// watermarkLocation is where the backend keeps its marks, as it says
// (through the decorators, such as the witness's guard).
func watermarkLocation(st ports.WatermarkStore) string {
	for range 8 {
		if l, ok := st.(interface{ Location() string }); ok {
			return l.Location()
		}
		u, ok := st.(interface{ Unwrap() ports.WatermarkStore })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	return ""
}

// logStart logs "sigil starting" (see above).
func logStart(log *slog.Logger, cfg *config.Config, driver string, st ports.WatermarkStore) {
	from := "default"
	switch {
	case cfg.BaseDirFlag != "":
		from = "--base-dir"
	case cfg.FileBaseDir != "":
		from = "base_dir"
	}
	attrs := append(startAttrs(cfg), slog.String("base_dir_from", from))
	if cfg.BaseDirFlag != "" && cfg.FileBaseDir != "" && filepath.Clean(cfg.FileBaseDir) != filepath.Clean(cfg.BaseDirFlag) {
		attrs = append(attrs, slog.String("config_base_dir_overridden", cfg.FileBaseDir))
	}
	attrs = append(attrs, slog.String("watermark", driver), slog.String("watermark_location", watermarkLocation(st)),
		slog.String("vaults", vaultList(cfg, nil)))
	log.LogAttrs(context.Background(), slog.LevelInfo, "sigil starting", attrs...)
}

// vaultList names the vaults with their drivers, and their key counts
// when count is given: "cs (confidentialspace): 12 keys, local (file): 1 key".
func vaultList(cfg *config.Config, count map[string]int) string {
	var parts []string
	for _, name := range keys(cfg.Vaults) {
		p := name
		if v := cfg.Vaults[name]; v != nil {
			p += " (" + v.Driver + ")"
		}
		if count != nil {
			n := count[name]
			p += fmt.Sprintf(": %d key%s", n, plural(n))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// maxMissingWarnings bounds the warnings about keys no vault holds; the
// others are counted in one line.
const maxMissingWarnings = 20

// logReady logs "signer ready" (see above) and a warning per key the
// policies name that no vault holds.
func logReady(log *slog.Logger, cfg *config.Config, svc *signer.Service, wm ports.WatermarkStore, ls *Listeners) {
	count := map[string]int{}
	for _, k := range svc.List() {
		count[k.Vault]++
	}
	driver, _ := watermarkDriver(cfg)
	// The listeners and the key count first, as the line has always
	// begun (scripts read them).
	attrs := append([]slog.Attr{slog.String("address", ls.API.String()), slog.String("utility_address", ls.Utility.String()),
		slog.Int("keys", svc.Count()), slog.String("vaults", vaultList(cfg, count))},
		startAttrs(cfg)...)
	attrs = append(attrs, slog.String("watermark", driver), slog.String("watermark_location", watermarkLocation(wm)))
	log.LogAttrs(context.Background(), slog.LevelInfo, "signer ready", attrs...)
	var missing []string
	for _, pkh := range keys(cfg.Tezos) {
		if !svc.Has(pkh) {
			missing = append(missing, pkh)
		}
	}
	for i, pkh := range missing {
		if i == maxMissingWarnings {
			log.Warn("the policies name more keys that no vault holds", "keys", len(missing)-i)
			break
		}
		log.Warn("the policy names a key that no vault holds: it cannot sign (a key file or storage other than the one meant, or a typo in the address?)",
			"pkh", pkh, "field", "tezos."+pkh, "line", cfg.Line("tezos."+pkh))
	}
}

// StartTasks are what must be done at start before the daemon says it is
// ready, besides loading the stored keys (development mode creates its
// keys). A task is added while the application is built and done from its
// start hook.
type StartTasks struct {
	mu      sync.Mutex
	pending int
	done    chan struct{}
}

func newStartTasks() *StartTasks { return &StartTasks{done: make(chan struct{})} }

// Add registers a task; call it before the application starts.
func (t *StartTasks) Add() {
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
}

// Done marks a task finished (whether it succeeded or not).
func (t *StartTasks) Done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending--
	if t.pending == 0 {
		close(t.done)
	}
}

// Wait returns true once every task is done, false if ctx ends first.
func (t *StartTasks) Wait(ctx context.Context) bool {
	t.mu.Lock()
	none := t.pending == 0
	t.mu.Unlock()
	if none {
		return true
	}
	select {
	case <-t.done:
		return true
	case <-ctx.Done():
		return false
	}
}
