package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/suggest"
)

// withSuggestions makes every command that has subcommands refuse an
// unknown one with "did you mean" (`sigil servee`: did you mean serve?),
// a group without a verb of its own (`sigil watermarks exprot`) included,
// which cobra answers with its help and exit status 0; and every unknown
// flag name the flags it is close to. The suggestions are the names of
// commands and flags (domain/suggest), never what was typed.
func withSuggestions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			c.Args = unknownSubcommand
			if !c.Runnable() {
				c.RunE = func(cmd *cobra.Command, args []string) error {
					if err := unknownSubcommand(cmd, args); err != nil {
						return err
					}
					return cmd.Help()
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	root.SetFlagErrorFunc(flagError)
}

// unknownSubcommand refuses any argument to a command whose arguments
// can only be subcommands.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	names := []string{"help"} // cobra's, not an available command
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
			names = append(names, sub.Aliases...)
		}
	}
	return fmt.Errorf("unknown command %s for %q%s", domain.EchoName(args[0]), cmd.CommandPath(), suggest.Hint(args[0], names, "see `"+cmd.CommandPath()+" --help`"))
}

// flagError adds the close flag names to pflag's "unknown flag: --name".
func flagError(cmd *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	name, _, _ = strings.Cut(name, "=")
	var names []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	close := suggest.For(name, names)
	if len(close) == 0 {
		return err
	}
	for i, n := range close {
		close[i] = "--" + n
	}
	return errors.New(err.Error() + " (did you mean " + strings.Join(close, " or ") + "?)")
}
