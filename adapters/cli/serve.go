package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/logbuf"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/signer"
)

// DefaultDevBaseDir is where `serve --dev` keeps its keys and KMS key.
const DefaultDevBaseDir = ".sigil-dev"

// serveOptions are serve's flags, which the root command has too.
type serveOptions struct {
	dev           bool
	noList        bool
	listen        string
	utilityListen string
	acceptReset   []string
}

func (o *serveOptions) flags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.dev, "dev", false, "Run with an embedded mock enclave and local storage (no cloud account)")
	cmd.Flags().BoolVar(&o.noList, "no-list", false, "Don't output the list of configured keys at startup")
	cmd.Flags().StringArrayVar(&o.acceptReset, "accept-watermark-reset", nil,
		"Sign consensus requests for this key (tz…) from the backend's marks although the backend is behind the watermark witness (logged; repeatable)")
	cmd.Flags().StringVar(&o.listen, "listen", "", "With --dev: the signer API's address (default "+app.DevAddress+")")
	cmd.Flags().StringVar(&o.utilityListen, "utility-listen", "", "With --dev: the utility listener's address, /healthz and /metrics (default "+app.DevUtilityAddress+")")
}

// devListeners checks --listen and --utility-listen: addresses, for --dev
// only (without it the configuration's server section says where to
// listen).
func (o *serveOptions) devListeners() error {
	for _, f := range []struct{ name, v string }{{"--listen", o.listen}, {"--utility-listen", o.utilityListen}} {
		if f.v == "" {
			continue
		}
		if !o.dev {
			return fmt.Errorf("%s is for --dev; without it, set server.address and server.utility_address in the configuration", f.name)
		}
		if _, _, err := net.SplitHostPort(f.v); err != nil {
			return fmt.Errorf("%s %q: want HOST:PORT (PORT 0 picks a free one): %v", f.name, f.v, err)
		}
	}
	return nil
}

func newServe(g *globals) *cobra.Command {
	var so serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the signer daemon (also what `sigil` with no command does)",
		Long: "Run the signer daemon. Once the stored keys are loaded it prints them, as `sigil list`\n" +
			"does (--no-list: don't). With --dev it runs entirely on this machine: an embedded mock\n" +
			"enclave on loopback with a local KMS stand-in, keys under ./" + DefaultDevBaseDir + " (or --base-dir),\n" +
			"listeners on " + app.DevAddress + " and " + app.DevUtilityAddress + " (--listen, --utility-listen), and one key\n" +
			"of each type created on first run. --dev is for development only.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, g, so)
		},
	}
	so.flags(cmd)
	return cmd
}

// runServe runs the daemon with the global options and so.
func runServe(cmd *cobra.Command, g *globals, so serveOptions) error {
	opts := g.opts
	opts.Daemon = true
	opts.AcceptWatermarkReset = so.acceptReset
	modules := []fx.Option{app.Serve()}
	if err := so.devListeners(); err != nil {
		return err
	}
	if so.dev {
		if opts.BaseDir == "" {
			abs, err := filepath.Abs(DefaultDevBaseDir)
			if err != nil {
				return err
			}
			opts.BaseDir = abs
		}
		if !cmd.Flags().Changed("config") {
			opts.ConfigPath = filepath.Join(opts.BaseDir, "sigil.yaml")
		}
		opts.AllowMissingConfig = true
		modules = append(modules, app.Dev(app.DevOptions{Out: cmd.OutOrStdout(), Listen: so.listen, UtilityListen: so.utilityListen}))
	} else if !so.noList {
		// (--dev prints its own list of keys.)
		modules = append(modules, listAtStart(cmd.OutOrStdout()))
	}
	// The daemon logs every signature: buffer the lines (flushed every
	// 100 ms, at once for warnings, and on exit).
	out := opts.Stderr
	if out == nil {
		out = os.Stderr
	}
	opts.LogBuffer = logbuf.New(out)
	defer opts.LogBuffer.Close()
	return runDaemon(cmd.Context(), fx.Options(append([]fx.Option{app.Core(opts)}, modules...)...))
}

// listAtStart prints the key table, as `sigil list` does, once the stored
// keys are loaded (they load in the background while the daemon already
// listens).
func listAtStart(w io.Writer) fx.Option {
	// Depending on the listeners orders this hook after the one that
	// starts loading the keys.
	return fx.Invoke(func(lc fx.Lifecycle, svc *signer.Service, _ *app.Listeners) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error {
				go func() {
					defer close(done)
					if svc.WaitLoaded(ctx) == nil {
						printKeys(w, svc.List(), svc.PolicyFor)
					}
				}()
				return nil
			},
			OnStop: func(context.Context) error {
				cancel()
				<-done
				return nil
			},
		})
	})
}
