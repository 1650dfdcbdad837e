package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/signer"
)

// newListRequests prints the request kinds a policy's `allow` may name, as
// Signatory's `list-requests` does (the older names endorsement,
// preendorsement and micheline are accepted too, and not printed). No
// configuration is read.
func newListRequests() *cobra.Command {
	return &cobra.Command{
		Use:   "list-requests",
		Short: "Print possible request types",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printList(cmd.OutOrStdout(), "Possible request types:", request.RequestKinds())
		},
	}
}

// newListOps prints the operation kinds `generic` may list, staking
// pseudo-operations included, as Signatory's `list-ops` does, plus the
// consensus operations Sigil also signs inside a generic request. A ballot
// may also be named with its vote (ballot:yay, …), not printed, as in
// Signatory.
func newListOps() *cobra.Command {
	return &cobra.Command{
		Use:   "list-ops",
		Short: "Print possible operation types inside the `generic` request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printList(cmd.OutOrStdout(), "Possible operation types:", signer.PolicyOperationKinds())
		},
	}
}

func printList(w io.Writer, title string, items []string) error {
	if _, err := fmt.Fprintln(w, title); err != nil {
		return err
	}
	for _, it := range items {
		if _, err := fmt.Fprintf(w, "    - %s\n", it); err != nil {
			return err
		}
	}
	return nil
}
