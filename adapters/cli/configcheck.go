package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/app"
)

// exitError ends the program with exit status 1 once its command has
// printed why (Execute prints nothing more).
type exitError struct{ problems int }

func (e exitError) Error() string { return fmt.Sprintf("%d problem(s) found", e.problems) }

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration file",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Check the configuration as the daemon does before it opens anything (exit status 0 or 1)",
		Long: "Check the configuration file as the daemon does before it opens anything: the file and\n" +
			"its fields, every policy, every vault with its key storage, the watermark backend and the\n" +
			"state directory. Nothing is dialled, opened or written. Prints one line per problem on\n" +
			"standard error and exits 1, or prints a one-line summary on standard output and exits 0.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sum, problems := app.CheckConfigAll(g.opts)
			if len(problems) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), sum)
				return nil
			}
			for _, p := range problems {
				// A configuration error names its file and line already
				// (FILE:LINE: FIELD: problem); any other problem is
				// the file's.
				msg := p.Error()
				var ce *config.Error
				if !errors.As(p, &ce) || ce.File == "" {
					msg = g.opts.ConfigPath + ": " + msg
				}
				fmt.Fprintln(cmd.ErrOrStderr(), msg)
			}
			return exitError{len(problems)}
		},
	})
	return cmd
}
