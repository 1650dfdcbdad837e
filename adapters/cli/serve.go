package cli

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/logbuf"
	"github.com/sigil-signer/sigil/app"
)

// DefaultDevBaseDir is where `serve --dev` keeps its keys and KMS key.
const DefaultDevBaseDir = ".sigil-dev"

func newServe(g *globals) *cobra.Command {
	var dev bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the signer daemon",
		Long: "Run the signer daemon. With --dev it runs entirely on this machine: an embedded mock\n" +
			"enclave on loopback with a local KMS stand-in, keys under ./" + DefaultDevBaseDir + " (or --base-dir),\n" +
			"and one key of each type created on first run. --dev is for development only.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := g.opts
			modules := []fx.Option{app.Serve()}
			if dev {
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
				modules = append(modules, app.Dev(app.DevOptions{Out: cmd.OutOrStdout()}))
			}
			// The daemon logs every signature: buffer the lines (flushed
			// every 100 ms, at once for warnings, and on exit).
			out := opts.Stderr
			if out == nil {
				out = os.Stderr
			}
			opts.LogBuffer = logbuf.New(out)
			defer opts.LogBuffer.Close()
			return runDaemon(fx.Options(append([]fx.Option{app.Core(opts)}, modules...)...))
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "Run with an embedded mock enclave and local storage (no cloud account)")
	return cmd
}
