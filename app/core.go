package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/logbuf"
	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/adapters/progress"
	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/ports"
)

// Options are the global command-line settings.
type Options struct {
	ConfigPath string // -c/--config
	BaseDir    string // --base-dir, overrides base_dir
	LogLevel   string // error|warn|info|debug|trace
	JSONLog    bool
	// AllowMissingConfig lets the configuration file be absent (dev mode).
	AllowMissingConfig bool
	// Stderr receives logs; nil means os.Stderr.
	Stderr io.Writer
	// LogBuffer, when set, buffers log lines in front of Stderr (the
	// daemon, under load, logs every signature); its owner closes it.
	LogBuffer *logbuf.Writer
	// StateDirs replaces DefaultStateDirs in the start-up check (tests).
	StateDirs *StateDirs
	// Daemon is set for `serve`: vaults log what happens in the background
	// (vault.Env.Daemon).
	Daemon bool
	// AcceptWatermarkReset are key hashes whose watermarks the operator
	// accepts to sign from although the backend is behind the watermark
	// witness (--accept-watermark-reset).
	AcceptWatermarkReset []string
	// WatermarkCreate lets the watermark backend create its storage (a
	// DynamoDB table) when it is missing, without a witness to say whether
	// marks existed (`sigil watermarks import`).
	WatermarkCreate bool
}

// Core provides configuration, logging, the vaults and the signing
// service: what every verb needs.
func Core(opts Options) fx.Option {
	return fx.Options(
		fx.Supply(opts),
		fx.Provide(newLogger, loadConfig, openVaults, newSigner, newProgress),
		fx.WithLogger(func(log *slog.Logger) fxevent.Logger {
			return &fxevent.SlogLogger{Logger: log.With("component", "fx")}
		}),
	)
}

// LevelTrace is below debug, for Signatory's "trace".
const LevelTrace = slog.LevelDebug - 4

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "error":
		return slog.LevelError, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "debug":
		return slog.LevelDebug, nil
	case "trace":
		return LevelTrace, nil
	}
	return 0, fmt.Errorf("invalid log level %q (want error, warn, info, debug or trace)", s)
}

func newLogger(opts Options) (*slog.Logger, error) {
	lvl, err := parseLevel(opts.LogLevel)
	if err != nil {
		return nil, err
	}
	w := opts.Stderr
	if w == nil {
		w = os.Stderr
	}
	if opts.LogBuffer != nil {
		w = opts.LogBuffer
	}
	h := logging.New(w, opts.JSONLog, lvl)
	if opts.LogBuffer != nil {
		h = logbuf.Handler(h, opts.LogBuffer)
	}
	return slog.New(h), nil
}

// loadConfig reads the configuration and validates all of it (policies and
// every driver section included) before anything is opened: every vault,
// store and the signing service depend on it, so a configuration error is
// reported before any enclave is dialled.
// newProgress reports long work (key loading, generation) on the log
// output: a bar on a terminal, periodic log lines otherwise.
func newProgress(opts Options, log *slog.Logger) ports.Progress {
	w := opts.Stderr
	if w == nil {
		w = os.Stderr
	}
	return progress.New(w, log, progress.Options{})
}

func loadConfig(opts Options) (*config.Config, error) {
	cfg, err := config.Load(opts.ConfigPath, opts.AllowMissingConfig, opts.BaseDir)
	if err != nil {
		return nil, err
	}
	if err := checkConfig(cfg, opts); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Vaults are the opened vaults, in name order.
type Vaults []signer.Vault

func openStorage(baseDir string, log *slog.Logger) vault.StorageOpener {
	return func(ctx context.Context, driver string, decode func(any) error) (ports.KeyStore, error) {
		if driver == "" {
			driver = "file"
		}
		open, ok := storageDrivers[driver]
		if !ok {
			return nil, fmt.Errorf("unknown storage driver %q (known: %s)", driver, strings.Join(keys(storageDrivers), ", "))
		}
		return open(ctx, decode, storage.Env{BaseDir: baseDir, Logger: log.With("storage", driver)})
	}
}

func openVaults(lc fx.Lifecycle, cfg *config.Config, opts Options, log *slog.Logger) (Vaults, error) {
	if len(cfg.Vaults) == 0 {
		return nil, noVaults(cfg)
	}
	names := keys(cfg.Vaults)
	var out Vaults
	ctx := context.Background()
	for _, name := range names {
		vc := cfg.Vaults[name]
		open, ok := vaultDrivers[vc.Driver]
		if !ok {
			return nil, unknownDriver(cfg, "vaults."+name+".driver", "driver", vc.Driver, keys(vaultDrivers))
		}
		inst, err := open(ctx, name, vc.Decoder(), vault.Env{
			BaseDir:     cfg.BaseDir,
			Logger:      log.With("vault", name),
			OpenStorage: openStorage(cfg.BaseDir, log),
			Daemon:      opts.Daemon,
		})
		if err != nil {
			return nil, fmt.Errorf("vaults.%s: %w", name, err)
		}
		if inst.Close != nil {
			lc.Append(fx.StopHook(inst.Close))
		}
		out = append(out, signer.Vault{Name: name, Enclave: inst.Enclave, Store: inst.Store, Display: inst.Display})
	}
	return out, nil
}

// SignerParams are the signing service's dependencies. The watermark store
// is optional: verbs that never sign run without one.
type SignerParams struct {
	fx.In
	Vaults     Vaults
	Config     *config.Config
	Log        *slog.Logger
	Watermarks ports.WatermarkStore `optional:"true"`
	Policy     *DefaultPolicy       `optional:"true"`
	Hook       ports.PolicyHook     `optional:"true"`
	Progress   ports.Progress       `optional:"true"`
}

// DefaultPolicy, when provided, applies to keys absent from the tezos
// section (development mode only).
type DefaultPolicy struct{ Policy *signer.Policy }

func newSigner(p SignerParams) (*signer.Service, error) {
	pols, err := Policies(p.Config, p.Log)
	if err != nil {
		return nil, err
	}
	opts := signer.Options{
		Logger:         p.Log,
		Policies:       pols,
		AuthorizedKeys: p.Config.Server.AuthorizedKeys,
		Watermarks:     p.Watermarks,
		Progress:       p.Progress,
		PolicyHook:     p.Hook,
	}
	if p.Policy != nil {
		opts.DefaultPolicy = p.Policy.Policy
	}
	return signer.New(p.Vaults, opts)
}

// Policies turns the configuration's tezos section into signing policies:
// a key listed with an empty entry gets Signatory's default (block,
// preattestation, attestation); warnings (deprecated or retired names) are
// logged.
func Policies(cfg *config.Config, log *slog.Logger) (map[string]*signer.Policy, error) {
	pols := make(map[string]*signer.Policy, len(cfg.Tezos))
	for _, pkh := range keys(cfg.Tezos) {
		pol, err := keyPolicy(cfg, pkh, log)
		if err != nil {
			return nil, err
		}
		pols[pkh] = pol
	}
	return pols, nil
}

// keyPolicy is the signing policy of the key pkh of cfg's tezos section;
// its error is placed at the policy's field (FILE:LINE: FIELD: problem).
func keyPolicy(cfg *config.Config, pkh string, log *slog.Logger) (*signer.Policy, error) {
	tp := cfg.Tezos[pkh]
	if tp == nil {
		return signer.DefaultKeyPolicy(), nil
	}
	allow, warnings, err := signer.NormalizePolicy(tp.Allow, tp.AllowedOperations, tp.AllowedKinds)
	if err != nil {
		return nil, policyError(cfg, pkh, err)
	}
	for _, w := range warnings {
		log.Warn("policy: "+w, "pkh", pkh)
	}
	return &signer.Policy{
		Allow:                  allow,
		AllowedChains:          tp.AllowedChains,
		LogPayloads:            tp.LogPayloads,
		AuthorizedKeys:         tp.AuthorizedKeys,
		AllowProofOfPossession: tp.AllowProofOfPossession,
		JWTUsers:               tp.JWTUsers,
	}, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
