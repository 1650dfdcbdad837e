package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func newGenerate(g *globals) *cobra.Command {
	var vault, typ string
	var n int
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate keys inside the enclave and store them sealed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kt, err := tezos.ParseKeyType(typ)
			if err != nil {
				return err
			}
			if n < 1 {
				return fmt.Errorf("--num must be at least 1, got %d", n)
			}
			return g.runOnce(cmd.Context(), app.Core(g.opts), func(ctx context.Context, svc *signer.Service) error {
				keys, err := svc.Generate(ctx, vault, kt, n)
				for _, k := range keys {
					fmt.Fprintln(cmd.OutOrStdout(), k.PKH.String())
				}
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&vault, "vault", "v", "", "Vault name for importing")
	cmd.Flags().StringVarP(&typ, "type", "t", "ed25519", "Key algorithm: [tz1, tz2, tz3, tz4, ed25519, secp256k1, p256, bls]")
	cmd.Flags().IntVarP(&n, "num", "n", 1, "Number of keys to generate")
	return cmd
}

func newImport(g *globals) *cobra.Command {
	var vault string
	cmd := &cobra.Command{
		Use:   "import [FILE]",
		Short: "Import a secret key (PEM, DER or Tezos base58) from FILE or standard input",
		Long: "Import a plain secret key into the enclave, which seals it; only the sealed form is stored.\n" +
			"The key is read from FILE, or from standard input when FILE is absent or \"-\". It is never printed.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readSecret(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			sk, err := tezos.ParsePrivateKeyAny(data)
			clear(data)
			if err != nil {
				return err
			}
			defer sk.Zero()
			return g.runOnce(cmd.Context(), app.Core(g.opts), func(ctx context.Context, svc *signer.Service) error {
				k, err := svc.Import(ctx, vault, sk)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), k.PKH.String())
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&vault, "vault", "v", "", "Vault name for importing")
	return cmd
}

// maxSecretFile bounds what import reads: key files are tiny.
const maxSecretFile = 64 << 10

func readSecret(stdin io.Reader, args []string) ([]byte, error) {
	var r io.Reader = stdin
	name := "standard input"
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, args[0]
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxSecretFile {
		clear(data)
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key file", name, maxSecretFile)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("no key given: pass a file or pipe the key on standard input")
	}
	return data, nil
}

func newList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.runOnce(cmd.Context(), app.Core(g.opts), func(ctx context.Context, svc *signer.Service) error {
				if err := svc.Load(ctx); err != nil {
					return err
				}
				printKeys(cmd.OutOrStdout(), svc.List())
				return nil
			})
		},
	}
}

func printKeys(w io.Writer, keys []signer.Key) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PUBLIC KEY HASH\tPUBLIC KEY\tVAULT\tTYPE")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.PKH, k.PublicKey, k.Vault, k.PKH.Type)
	}
	tw.Flush()
}
