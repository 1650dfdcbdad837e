package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
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
	var vault, password, opt, from string
	cmd := &cobra.Command{
		Use:   "import [SECRET_KEY | FILE | -]... | -f FILE",
		Short: "Import secret keys (edsk…, spsk…, p2sk…, BLsk…, their encrypted forms, PEM, DER) into the enclave",
		Long: "Import secret keys into the enclave, which seals them; only the sealed form is stored, and the\n" +
			"address of each key is printed. A key is given as an argument (a Tezos secret key string, or\n" +
			"the name of a file holding one, PEM or DER), or, with no argument or \"-\", typed at the prompt\n" +
			"(not echoed) or read from standard input. An encrypted key (edesk…, spesk…, p2esk…, BLesk…, as\n" +
			"octez-client writes them, \"encrypted:\" prefix allowed) is decrypted with --password, else with\n" +
			"the password typed at the prompt or read from the next line of standard input.\n" +
			"-f/--from FILE (Signatory's form) imports the key held in FILE.\n" +
			"The configuration is checked before anything is asked. Keys and passwords are never printed.",
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := parseOptions(opt)
			if err != nil {
				return err
			}
			if len(o) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: import options ignored (%s): Sigil's vaults take none\n", strings.Join(slices.Sorted(maps.Keys(o)), ", "))
			}
			if err := app.CheckConfig(g.opts); err != nil {
				return err
			}
			in := newSecretInput(cmd.InOrStdin(), cmd.ErrOrStderr())
			defer in.clear()
			if cmd.Flags().Changed("password") {
				fmt.Fprintln(cmd.ErrOrStderr(), passwordWarning)
			}
			getPassword := func() ([]byte, error) {
				if password != "" {
					return []byte(password), nil
				}
				return in.password()
			}
			sources := args
			if from != "" {
				if len(args) > 0 {
					return fmt.Errorf("import: give the key either with --from or as an argument, not both (got --from %s and %d argument(s))", domain.Echo(from), len(args))
				}
			} else if len(sources) == 0 {
				sources = []string{"-"}
			}
			if from != "" {
				sources = []string{from}
			}
			var keys []tezos.PrivateKey
			defer func() {
				for i := range keys {
					keys[i].Zero()
				}
			}()
			warned := false
			for i, src := range sources {
				var data []byte
				var err error
				if from != "" {
					// Always a file, as Signatory reads it.
					if _, statErr := os.Stat(src); statErr != nil {
						err = fmt.Errorf("--from: no such file (a path of %d characters, not repeated: it may be a mistyped secret)", len(src))
					} else {
						data, err = readKeyFile(src)
					}
				} else {
					data, err = keyMaterial(src, in)
				}
				if err == nil && isKeyText(src) && !warned {
					warned = true
					fmt.Fprintln(cmd.ErrOrStderr(), "warning: a secret key given as an argument can be seen by other users of this machine (ps) and stays in the shell history; prefer the prompt or a file")
				}
				var sk tezos.PrivateKey
				if err == nil {
					sk, err = parseSecret(data, getPassword)
					clear(data)
				}
				if err != nil {
					if len(sources) > 1 {
						return fmt.Errorf("key %d of %d: %w", i+1, len(sources), err)
					}
					return err
				}
				keys = append(keys, sk)
			}
			return g.runOnce(cmd.Context(), app.Core(g.opts), func(ctx context.Context, svc *signer.Service) error {
				task := g.progress(cmd, "importing keys", len(keys))
				defer task.Done()
				for _, sk := range keys {
					k, err := svc.Import(ctx, vault, sk)
					if err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), k.PKH.String())
					task.Add(1)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&vault, "vault", "v", "", "Vault name for importing (optional with one vault)")
	cmd.Flags().StringVar(&password, "password", "", "Password of encrypted secret keys (else asked, or read from the line after the key)")
	cmd.Flags().StringVarP(&opt, "opt", "o", "", "Options to be passed to the backend. Syntax: key:val[,...] (Sigil's vaults take none)")
	cmd.Flags().StringVarP(&from, "from", "f", "", "Import the key held in this file (PEM, DER or a Tezos secret key string)")
	return cmd
}

// passwordWarning is printed when --password is given.
const passwordWarning = "warning: --password can be seen by other users of this machine (ps) and stays in the shell history; " +
	"prefer the prompt, or give the password on standard input, on the line after the key (see docs/configuration.md, import)"

// keyMaterial returns the key material src names: "-" for the prompt or
// standard input, a Tezos secret key string as is, else a file's content.
func keyMaterial(src string, in *secretInput) ([]byte, error) {
	switch {
	case src == "-":
		return in.key()
	case isKeyText(src):
		return []byte(src), nil
	}
	return readKeyFile(src)
}

// readKeyFile returns the content of the key file src, bounded.
func readKeyFile(src string) ([]byte, error) {
	f, err := os.Open(src)
	if err != nil {
		if _, statErr := os.Stat(src); statErr != nil {
			// Not a file that exists: the argument may be a secret in a
			// form not recognised (hex, a mistyped prefix, a password), so
			// none of it is repeated, not even its first characters.
			return nil, fmt.Errorf("an argument of %d characters is neither an existing file nor a Tezos secret key string (edsk…, spsk…, p2sk…, BLsk… or their encrypted forms); it is not repeated, since it may be a secret", len(src))
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		clear(data)
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	if len(data) > maxSecretFile {
		clear(data)
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key file", src, maxSecretFile)
	}
	return data, nil
}

func newList(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the keys of every vault with their policy",
		Long: "List the keys of every vault (loading them into the enclave), with Signatory's fields: the\n" +
			"policy that applies (Active: false when the key is not under tezos: and may not sign).\n" +
			"-o json prints the same as a JSON array, -o pkh one address per line (for scripts).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "text", "json", "pkh":
			default:
				return fmt.Errorf("list: -o %s: unknown output format (want text, json or pkh)", domain.Echo(output))
			}
			return g.runOnce(cmd.Context(), app.Core(g.opts), func(ctx context.Context, svc *signer.Service) error {
				if err := svc.Load(ctx); err != nil {
					return err
				}
				switch output {
				case "json":
					return printKeysJSON(cmd.OutOrStdout(), svc.List(), svc.PolicyFor)
				case "pkh":
					for _, k := range svc.List() {
						fmt.Fprintln(cmd.OutOrStdout(), k.Address)
					}
					return nil
				}
				printKeys(cmd.OutOrStdout(), svc.List(), svc.PolicyFor)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text (Signatory's layout), json, or pkh (one address per line)")
	return cmd
}

// listedKey is one key of `list -o json`.
type listedKey struct {
	Address                string   `json:"address"`
	PublicKey              string   `json:"public_key"`
	Vault                  string   `json:"vault"`
	Active                 bool     `json:"active"`
	AllowedRequests        []string `json:"allowed_requests"`
	AllowedOperations      []string `json:"allowed_operations"`
	AllowProofOfPossession bool     `json:"allow_proof_of_possession"`
}

// printKeysJSON writes the keys as a JSON array (the fields of printKeys;
// the lists are empty, never null, for a key that may not sign).
func printKeysJSON(w io.Writer, keys []signer.Key, policyFor func(string) *signer.Policy) error {
	out := make([]listedKey, 0, len(keys))
	for _, k := range keys {
		l := listedKey{Address: k.Address, PublicKey: k.PublicKey.String(), Vault: k.Vault,
			AllowedRequests: []string{}, AllowedOperations: []string{}}
		if pol := policyFor(k.Address); pol != nil {
			l.Active = true
			l.AllowedRequests = nonNil(slices.Sorted(maps.Keys(pol.Allow)))
			l.AllowedOperations = nonNil(slices.Clone(pol.Allow[string(request.KindGeneric)]))
			slices.Sort(l.AllowedOperations)
			l.AllowProofOfPossession = pol.AllowProofOfPossession
		}
		out = append(out, l)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// printKeys writes one block per key, with Signatory's labels and layout
// (its `list` template): address, public key, vault reference (none here),
// vault, whether the key may sign, and its policy.
func printKeys(w io.Writer, keys []signer.Key, policyFor func(string) *signer.Policy) {
	var b strings.Builder
	line := func(label string, v any) { fmt.Fprintf(&b, "%-27s%v\n", label+":", v) }
	for _, k := range keys {
		pol := policyFor(k.Address)
		line("Public Key Hash", k.Address)
		line("Public Key", k.PublicKey.String())
		line("Reference", "")
		line("Vault", k.Vault)
		line("Active", pol != nil)
		if pol != nil {
			reqs := slices.Sorted(maps.Keys(pol.Allow))
			ops := slices.Clone(pol.Allow[string(request.KindGeneric)])
			slices.Sort(ops)
			line("Allowed Requests", fmt.Sprint(nonNil(reqs)))
			line("Allowed Operations", fmt.Sprint(nonNil(ops)))
			line("Allow Proof of Possession", pol.AllowProofOfPossession)
		}
		b.WriteString("\n")
	}
	io.WriteString(w, b.String())
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
