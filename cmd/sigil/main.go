// Command sigil is the Sigil Tezos remote signer: the daemon (`sigil serve`)
// and its key management verbs, compatible with Signatory's.
package main

import (
	"os"

	"github.com/sigil-signer/sigil/adapters/cli"
)

func main() { os.Exit(cli.Execute()) }
