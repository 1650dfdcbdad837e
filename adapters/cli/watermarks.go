package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
	"github.com/sigil-signer/sigil/adapters/internal/strictjson"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// maxWatermarkFile bounds what `watermarks import` reads: even a large
// fleet's marks are a few megabytes.
const maxWatermarkFile = 256 << 20

func newWatermarks(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watermarks",
		Short: "Export or import high watermarks (double-signing protection)",
		Long: "Export the recorded high watermarks of the configured watermark backend as a JSON array,\n" +
			"or import such an array into it. Import only ever raises marks: a record at or below the\n" +
			"recorded mark changes nothing. With the file backend the daemon holds an exclusive lock on\n" +
			"the watermark directory: stop it first.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newWatermarksExport(g), newWatermarksImport(g))
	return cmd
}

func newWatermarksExport(g *globals) *cobra.Command {
	var out string
	var fromWitness bool
	cmd := &cobra.Command{
		Use:   "export [-o FILE] [--witness]",
		Short: "Write every recorded watermark as a JSON array to FILE or standard output",
		Long: "Write every watermark the configured backend holds as a JSON array (the import format) to FILE or\n" +
			"standard output. With --witness, write instead the marks this state directory's watermark witness\n" +
			"recorded (<base_dir>/witness/: the highest mark the daemon committed per chain, key and kind;\n" +
			"positions and digests, no signatures), to restore them into a backend that lost them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			write := func(recs []watermark.Record) error { return writeExport(cmd, g, out, recs) }
			if fromWitness {
				recs, err := app.WitnessRecords(g.opts)
				if err != nil {
					return err
				}
				return write(recs)
			}
			return withWatermarkStore(cmd.Context(), g.opts, func(ctx context.Context, st ports.WatermarkStore) error {
				recs, err := st.Export(ctx)
				if err != nil {
					return fmt.Errorf("exporting watermarks: %w", err)
				}
				return write(recs)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "Output file (default: standard output)")
	cmd.Flags().BoolVar(&fromWitness, "witness", false, "Export the watermark witness's marks instead of the backend's")
	return cmd
}

// writeExport writes recs as the export format to out (a file, or
// standard output for "" and "-").
func writeExport(cmd *cobra.Command, g *globals, out string, recs []watermark.Record) error {
	task := g.progress(cmd, "exporting watermarks", len(recs))
	defer task.Done()
	defer task.Add(len(recs)) // written (or failed) at once
	if recs == nil {
		recs = []watermark.Record{}
	}
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding watermarks: %w", err)
	}
	data = append(data, '\n')
	if out == "" || out == "-" {
		if _, err := cmd.OutOrStdout().Write(data); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "exported %d watermark records\n", len(recs))
		return nil
	}
	// A symbolic link at -o is refused: the link would be
	// followed and its target (anything the link points at)
	// replaced by the export.
	if fi, err := os.Lstat(out); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link: refusing to replace what it points at; give the real path, or remove the link", out)
	}
	if err := atomicfile.Write(out, data, 0o600, nil); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "exported %d watermark records to %s\n", len(recs), out)
	return nil
}

func newWatermarksImport(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Raise watermarks to the records of FILE (a JSON array as export writes; - for standard input)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			recs, err := readWatermarkFile(cmd.InOrStdin(), name)
			if err != nil {
				return err
			}
			// All or nothing: every recorded signature is checked against
			// its key before anything is stored (the keys are loaded from
			// the vaults, so the enclave must be reachable when records
			// carry signatures).
			if hasSignatures(recs) {
				keys, err := g.publicKeys(cmd.Context())
				if err != nil {
					return fmt.Errorf("loading the signer's keys to check the records' signatures: %w", err)
				}
				task := g.progress(cmd, "checking watermark signatures", signedRecords(recs))
				err = watermark.VerifyRecords(recs, func(pkh string) (tezos.PublicKey, bool) {
					task.Add(1) // called once per signed record
					pk, ok := keys[pkh]
					return pk, ok
				})
				task.Done()
				if err != nil {
					return fmt.Errorf("%s: %w (nothing was imported)", displayName(name), err)
				}
			}
			opts := g.opts
			opts.WatermarkCreate = true // importing marks may create the table
			return withWatermarkStore(cmd.Context(), opts, func(ctx context.Context, st ports.WatermarkStore) error {
				before, err := st.Export(ctx)
				if err != nil {
					return fmt.Errorf("reading the recorded watermarks: %w", err)
				}
				task := g.progress(cmd, "importing watermarks", len(recs))
				err = st.Import(ctx, recs)
				task.Add(len(recs))
				task.Done()
				if err != nil {
					return fmt.Errorf("importing watermarks: %w", err)
				}
				after, err := st.Export(ctx)
				if err != nil {
					return fmt.Errorf("reading the watermarks back: %w", err)
				}
				raised := countRaised(recs, before, after)
				fmt.Fprintf(cmd.OutOrStdout(), "read %d watermark records from %s, raised %d watermarks (%d unchanged)\n",
					len(recs), displayName(name), raised, distinctKeys(recs)-raised)
				return nil
			})
		},
	}
}

func signedRecords(recs []watermark.Record) int {
	n := 0
	for _, r := range recs {
		if r.Signature != "" {
			n++
		}
	}
	return n
}

func hasSignatures(recs []watermark.Record) bool {
	for _, r := range recs {
		if r.Signature != "" {
			return true
		}
	}
	return false
}

// publicKeys loads every stored key into its enclave and returns the
// public keys by address.
func (g *globals) publicKeys(ctx context.Context) (map[string]tezos.PublicKey, error) {
	out := map[string]tezos.PublicKey{}
	err := g.runOnce(ctx, app.Core(g.opts), func(ctx context.Context, svc *signer.Service) error {
		if err := svc.Load(ctx); err != nil {
			return err
		}
		for _, k := range svc.List() {
			out[k.Address] = k.PublicKey
		}
		return nil
	})
	return out, err
}

func displayName(name string) string {
	if name == "-" {
		return "standard input"
	}
	return name
}

// readWatermarkFile reads and validates a JSON array of watermark records.
func readWatermarkFile(stdin io.Reader, name string) ([]watermark.Record, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxWatermarkFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", displayName(name), err)
	}
	if len(data) > maxWatermarkFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", displayName(name), maxWatermarkFile)
	}
	recs, err := parseWatermarks(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayName(name), err)
	}
	return recs, nil
}

// parseWatermarks decodes the export format: a JSON array of records.
func parseWatermarks(data []byte) ([]watermark.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw []json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("not a watermark export: the file is empty (want a JSON array of records)")
		}
		return nil, fmt.Errorf("not a watermark export: invalid JSON (want an array of records as `sigil watermarks export` writes): %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a watermark export: trailing data after the JSON array")
	}
	if raw == nil {
		return nil, errors.New("not a watermark export: want a JSON array of records, got null")
	}
	recs := make([]watermark.Record, len(raw))
	for i, m := range raw {
		if err := strictjson.Check(m, watermark.RecordJSON{}); err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
		if err := json.Unmarshal(m, &recs[i]); err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
	}
	return recs, nil
}

func distinctKeys(recs []watermark.Record) int {
	seen := make(map[watermark.Key]bool, len(recs))
	for _, r := range recs {
		seen[r.Key] = true
	}
	return len(seen)
}

// countRaised counts the keys named in recs whose recorded mark changed
// between before and after.
func countRaised(recs, before, after []watermark.Record) int {
	b := make(map[watermark.Key]watermark.Mark, len(before))
	for _, r := range before {
		b[r.Key] = r.Mark
	}
	a := make(map[watermark.Key]watermark.Mark, len(after))
	for _, r := range after {
		a[r.Key] = r.Mark
	}
	n := 0
	seen := make(map[watermark.Key]bool, len(recs))
	for _, r := range recs {
		if seen[r.Key] {
			continue
		}
		seen[r.Key] = true
		old, hadOld := b[r.Key]
		cur, hasCur := a[r.Key]
		if hasCur && (!hadOld || cur != old) {
			n++
		}
	}
	return n
}

// withWatermarkStore opens the configured watermark backend (and nothing
// else: no vault, no enclave), runs fn and closes it.
func withWatermarkStore(ctx context.Context, opts app.Options, fn func(context.Context, ports.WatermarkStore) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var (
		st  ports.WatermarkStore
		cfg *config.Config
	)
	a := fx.New(app.Core(opts), app.Watermarks(), fx.Populate(&st, &cfg), fx.NopLogger)
	if err := a.Err(); err != nil {
		return explainWatermarkOpen(unwrapFx(err))
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		return unwrapFx(err)
	}
	opCtx, cancelOp := context.WithTimeout(ctx, 10*time.Minute)
	err := fn(opCtx, st)
	cancelOp()
	stopCtx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	return errors.Join(err, a.Stop(stopCtx))
}

// explainWatermarkOpen adds what to do when the file backend's directory
// is locked by another process (normally a running daemon).
func explainWatermarkOpen(err error) error {
	if err != nil && strings.Contains(err.Error(), "in use by another process") {
		return fmt.Errorf("%w: a sigil daemon (or another sigil command) is running with this base directory "+
			"and holds the exclusive lock of the file watermark backend; stop it, then run this command again", err)
	}
	return err
}
