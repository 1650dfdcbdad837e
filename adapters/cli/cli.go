// Package cli is Sigil's command-line adapter: the cobra commands of the
// `sigil` binary (serve, generate, import, list, version, …) with
// Signatory's verbs and global flags. Each verb builds the application from
// the same fx modules as the daemon and calls the domain service.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/dig"
	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/progress"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultConfigPath is where the configuration is read from by default.
const DefaultConfigPath = "/etc/sigil.yaml"

type globals struct {
	opts    app.Options
	timeout time.Duration
}

// stateDirs, when set (tests), replaces app.DefaultStateDirs.
var stateDirs *app.StateDirs

// NewRoot returns the root command. As Signatory's, the root command with
// no verb runs the daemon (`sigil` is `sigil serve`, with serve's flags).
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	// On a terminal, log lines and progress bars share it through one
	// console: a log line is written above the bar, never inside it.
	stderr = progress.ConsoleFor(stderr)
	g := &globals{}
	var so serveOptions
	root := &cobra.Command{
		Use:   "sigil",
		Short: "A Tezos remote signer whose keys live in a Confidential Space enclave",
		Long: "A Tezos remote signer whose keys live in a Confidential Space enclave.\n" +
			"With no command, sigil runs the daemon, as `sigil serve` does.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, g, so)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// --version prints what `sigil version` prints (cobra's version flag,
	// without the -v shorthand, which generate and import use for vaults).
	root.Version = versionText()
	root.SetVersionTemplate("{{.Version}}")
	root.Flags().Bool("version", false, "Show the version, VCS revision, build time and Go version (as `sigil version`)")
	f := root.PersistentFlags()
	f.StringVar(&g.opts.BaseDir, "base-dir", "", "Base directory. Takes priority over one specified in config")
	f.StringVarP(&g.opts.ConfigPath, "config", "c", DefaultConfigPath, "Config file path")
	f.BoolVar(&g.opts.JSONLog, "json-log", false, "Use JSON structured logs")
	f.StringVar(&g.opts.LogLevel, "log", "info", "Log level: [error, warn, info, debug, trace]")
	f.DurationVar(&g.timeout, "timeout", time.Minute, "How long a key command waits for the enclave and storage")
	so.flags(root)
	g.opts.Stderr = stderr
	g.opts.StateDirs = stateDirs
	root.AddCommand(
		newServe(g),
		newGenerate(g),
		newImport(g),
		newList(g),
		newListRequests(),
		newListOps(),
		newWatermarks(g),
		newEnclaveClientKey(),
		newVersion(),
		newConfigCmd(g),
	)
	withSuggestions(root)
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	root := NewRoot(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		if errors.As(err, new(exitError)) {
			return 1 // the command printed why
		}
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Aliases: []string{"v"},
		Short:   "Show the version, VCS revision, build time and Go version (short alias 'v')",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// From the Go build information (module version, VCS revision
			// and commit time), plus what scripts/build-release.sh sets
			// with -ldflags (build time, branch). See adapters/buildinfo.
			fmt.Fprint(cmd.OutOrStdout(), versionText())
			return nil
		},
	}
}

// versionText is what `sigil version` and `sigil --version` print.
func versionText() string {
	i := buildinfo.Read()
	return fmt.Sprintf("sigil %s\n%s", i.Version, i)
}

// progress starts reporting a task of total items on the command's error
// output: a bar on a terminal, log lines every few seconds otherwise. Tasks
// of one item or none report nothing.
func (g *globals) progress(cmd *cobra.Command, what string, total int) ports.ProgressTask {
	if total < 2 {
		return ports.NoProgress{}.Begin(what, total)
	}
	w := cmd.ErrOrStderr()
	return progress.New(w, slog.New(slog.NewTextHandler(w, nil)), progress.Options{}).Begin(what, total)
}

// runOnce builds the app from modules, starts it, runs fn with the signing
// service and a context bounded by --timeout, and stops it.
func (g *globals) runOnce(ctx context.Context, modules fx.Option, fn func(context.Context, *signer.Service) error) error {
	var svc *signer.Service
	a := fx.New(modules, fx.Populate(&svc), fx.NopLogger)
	if err := a.Err(); err != nil {
		return unwrapFx(err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		return unwrapFx(err)
	}
	opCtx, cancelOp := context.WithTimeout(ctx, g.timeout)
	err := fn(opCtx, svc)
	cancelOp()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (gave up after --timeout %s)", err, g.timeout)
	}
	stopCtx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	return errors.Join(err, a.Stop(stopCtx))
}

// runDaemon builds the app, starts it and serves until SIGINT or SIGTERM
// (or until ctx ends). SIGHUP reloads the configuration (app.Reloader: in
// the background, never stopping the signer; a bad configuration is
// refused and the running one kept). On SIGINT/SIGTERM the app stops:
// listeners close, in-flight requests drain (bounded by stopTimeout), the
// watermark store closes; each step is logged.
func runDaemon(ctx context.Context, modules fx.Option) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var log *slog.Logger
	var reloader *app.Reloader
	a := fx.New(modules, fx.Populate(&log, &reloader), fx.NopLogger)
	if err := a.Err(); err != nil {
		return unwrapFx(err)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	startCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		return unwrapFx(err)
	}
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				log.Debug("SIGHUP received: reloading the configuration")
				reloader.Trigger(app.TriggerSIGHUP)
				continue
			}
			log.Info("signal received: shutting down", "signal", s.String())
			break wait
		case <-ctx.Done():
			log.Info("shutting down")
			break wait
		}
	}
	stopCtx, cancel2 := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel2()
	if err := a.Stop(stopCtx); err != nil {
		log.Error("shutdown incomplete", "error", err.Error())
		return err
	}
	log.Info("sigil stopped")
	return nil
}

// stopTimeout bounds the graceful shutdown (draining requests, closing
// stores).
const stopTimeout = 30 * time.Second

// unwrapFx strips fx's dependency-graph wording down to the root cause.
func unwrapFx(err error) error {
	if root := dig.RootCause(err); root != nil {
		return root
	}
	return err
}
