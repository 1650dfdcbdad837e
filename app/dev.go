package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"go.uber.org/fx"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/app/enclaveapp"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// DevVault is the vault name the embedded development signer uses.
const DevVault = "dev"

// DevOptions configure the embedded development signer.
type DevOptions struct {
	// Out receives the banner with key addresses and the URL.
	Out io.Writer
	// Listen and UtilityListen, when set, are the listeners' addresses
	// (serve --dev --listen, --utility-listen), whatever the
	// configuration says; else DevAddress and DevUtilityAddress unless the
	// configuration sets others.
	Listen, UtilityListen string
}

// Development listeners' default addresses (loopback only).
const (
	DevAddress        = "127.0.0.1:6732"
	DevUtilityAddress = "127.0.0.1:9583"
)

// devEnclave is the enclave running in-process on loopback.
type devEnclave struct {
	addr *net.TCPAddr
}

// Dev runs the whole signer on this machine with no cloud account: the
// enclave (app/enclaveapp) in-process on loopback with the `local` KMS stand-in (an AES key
// file under the base directory), file storage under the base directory,
// listeners on loopback, and one key of each type created on first run.
// Combine it with Core and Serve.
func Dev(o DevOptions) fx.Option {
	return fx.Options(
		fx.Supply(o),
		fx.Provide(startDevEnclave),
		fx.Supply(&DefaultPolicy{Policy: signer.AllowAll()}),
		fx.Decorate(devConfig),
		fx.Provide(func(enc *devEnclave, o DevOptions) ConfigTransform {
			// A reload adapts the configuration file as the start did.
			return func(c *config.Config) (*config.Config, error) { return devConfig(c, enc, o) }
		}),
		fx.Invoke(devBootstrap),
	)
}

func startDevEnclave(lc fx.Lifecycle, cfg *config.Config, log *slog.Logger) (*devEnclave, error) {
	if err := os.MkdirAll(cfg.BaseDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating base directory: %w", err)
	}
	enc, err := enclaveapp.Open(enclaveapp.Options{KMS: "local", KMSKeyFile: filepath.Join(cfg.BaseDir, "enclave-kms.key")},
		log.With("component", "dev-enclave"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = enc.Close()
		return nil, err
	}
	go func() { _ = enc.Serve(ln) }()
	lc.Append(fx.StopHook(enc.Close))
	log.Info("embedded development enclave listening", "address", ln.Addr().String(), "kms", "local")
	return &devEnclave{addr: ln.Addr().(*net.TCPAddr)}, nil
}

// devConfig points a (possibly empty) configuration at the embedded
// enclave and keeps the listeners on loopback unless configured otherwise
// (or given by --listen and --utility-listen).
func devConfig(cfg *config.Config, enc *devEnclave, o DevOptions) (*config.Config, error) {
	c := *cfg
	var node yaml.Node
	if err := node.Encode(map[string]any{
		"host":                enc.addr.IP.String(),
		"port":                fmt.Sprint(enc.addr.Port),
		"wip_provider_path":   "dev/local-kms",
		"encryption_key_path": "dev/local-kms",
	}); err != nil {
		return nil, err
	}
	c.Vaults = map[string]*config.Vault{DevVault: {Driver: "confidentialspace", Config: node}}
	if c.Server.Address == config.DefaultAddress {
		c.Server.Address = DevAddress
	}
	if c.Server.UtilityAddress == config.DefaultUtilityAddress {
		c.Server.UtilityAddress = DevUtilityAddress
	}
	if o.Listen != "" {
		c.Server.Address = o.Listen
	}
	if o.UtilityListen != "" {
		c.Server.UtilityAddress = o.UtilityListen
	}
	return &c, nil
}

// devBootstrap creates one key of each type on first run and prints the
// keys and the URL once the daemon is up.
// The daemon says it is ready once they exist.
func devBootstrap(lc fx.Lifecycle, svc *signer.Service, ls *Listeners, o DevOptions, tasks *StartTasks) {
	tasks.Add()
	lc.Append(fx.StartHook(func(ctx context.Context) error {
		defer tasks.Done()
		if err := svc.WaitLoaded(ctx); err != nil {
			return fmt.Errorf("waiting for the stored keys to load: %w", err)
		}
		if len(svc.List()) == 0 {
			for _, t := range tezos.KeyTypes {
				if _, err := svc.Generate(ctx, DevVault, t, 1); err != nil {
					return err
				}
			}
		}
		out := o.Out
		if out == nil {
			out = os.Stdout
		}
		fmt.Fprintf(out, "\nSigil development signer (embedded enclave, no cloud account)\n")
		fmt.Fprintf(out, "  signer API:  http://%s\n  health:      http://%s/healthz\n\n", ls.API, ls.Utility)
		for _, k := range svc.List() {
			fmt.Fprintf(out, "  %-10s %s\n", k.PKH.Type, k.PKH)
		}
		fmt.Fprintf(out, "\nTry: curl http://%s/keys/%s\n\n", ls.API, svc.List()[0].PKH)
		return nil
	}))
}
