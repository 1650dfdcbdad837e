package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sigil-signer/sigil/adapters/securechannel"
)

// newEnclaveClientKey creates the daemon's key for the attested channel to
// the enclave, unless the file exists, and prints its pin: the value the
// enclave's launch configuration lists (SIGIL_ENCLAVE_CLIENT_PINS). No
// configuration is read.
func newEnclaveClientKey() *cobra.Command {
	return &cobra.Command{
		Use:   "enclave-client-key FILE",
		Short: "Create the daemon's key for the attested enclave channel (if FILE does not exist) and print its pin",
		Long: "Create the daemon's TLS key for the attested channel to a Confidential Space enclave\n" +
			"(ECDSA P-256, PKCS#8 PEM, mode 0600, written atomically) unless FILE exists, and print\n" +
			"its pin (sha256:<hex of the SHA-256 of its public key>) on standard output. An existing\n" +
			"file is never replaced: its pin is printed. The enclave's launch configuration must\n" +
			"list the pin in SIGIL_ENCLAVE_CLIENT_PINS.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, created, err := securechannel.EnsureClientKey(args[0])
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(cmd.ErrOrStderr(), "created %s\n", args[0])
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s exists; its pin:\n", args[0])
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), key.Pin)
			return err
		},
	}
}
