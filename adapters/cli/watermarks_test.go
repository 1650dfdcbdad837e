package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	"github.com/sigil-signer/sigil/adapters/watermark/witness"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
)

const testChain = "NetXdQprcVkpaWU"

// signerEnv is a base directory with a config whose confidentialspace vault
// points at an in-process mock enclave (passthrough KMS), and keys imported
// into it whose secrets the test holds, so marks carry real signatures.
type signerEnv struct {
	dir, cfg string
	keys     []tezos.PrivateKey // ed25519, then BLS
}

// baseDir returns a fresh signerEnv with the default (file) watermark
// backend.
func baseDir(t *testing.T) (dir, cfgPath string) {
	e := newSignerEnv(t)
	return e.dir, e.cfg
}

var (
	sharedKeysOnce sync.Once
	sharedKeys     []tezos.PrivateKey
)

func newSignerEnv(t *testing.T) *signerEnv {
	t.Helper()
	srv := enclavetest.NewServer(t, enclavetest.ServerOptions{KMS: passthroughstandin.KMS{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	e := &signerEnv{dir: t.TempDir()}
	e.cfg = filepath.Join(e.dir, "sigil.yaml")
	cfg := fmt.Sprintf("base_dir: %s\nvaults:\n  cs:\n    driver: confidentialspace\n    config:\n      host: 127.0.0.1\n      port: \"%d\"\n      wip_provider_path: test/wip\n      encryption_key_path: test/kms\n",
		e.dir, ln.Addr().(*net.TCPAddr).Port)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sharedKeysOnce.Do(func() {
		for _, kt := range []tezos.KeyType{tezos.Ed25519, tezos.BLS} {
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			if err != nil {
				panic(err)
			}
			sharedKeys = append(sharedKeys, sk)
		}
	})
	for _, sk := range sharedKeys {
		if _, errOut, err := runCLI(t, sk.Base58(), "-c", e.cfg, "--timeout", "10s", "import"); err != nil {
			t.Fatalf("import: %v %s", err, errOut)
		}
	}
	e.keys = sharedKeys
	return e
}

func pkhOf(sk tezos.PrivateKey) string {
	pk, _ := sk.Public()
	return pk.Hash().String()
}

// mark returns a mark at level/round for a message made from b, signed by
// sk (no signature when sign is false).
func mark(t *testing.T, sk tezos.PrivateKey, level, round int32, b byte, sign bool) watermark.Mark {
	t.Helper()
	msg := []byte{0x13, b, byte(level), byte(round)}
	m := watermark.Mark{Level: level, Round: round, Digest: tezos.Digest(msg)}
	if sign {
		sig, err := sk.Sign(msg, tezos.SignVersion2)
		if err != nil {
			t.Fatal(err)
		}
		m.Signature = sig.String()
	}
	return m
}

func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	root := NewRoot(&o, &e)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return o.String(), e.String(), err
}

// seed records marks in dir's file store as a daemon would.
func seed(t *testing.T, dir string) []watermark.Record {
	t.Helper()
	st, err := wmfile.Open(wmfile.Config{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ed, bls := sharedKeys[0], sharedKeys[1]
	recs := []watermark.Record{
		{Key: watermark.Key{ChainID: testChain, PKH: pkhOf(ed), Kind: watermark.KindBlock}, Mark: mark(t, ed, 120, 1, 1, true)},
		{Key: watermark.Key{ChainID: testChain, PKH: pkhOf(ed), Kind: watermark.KindAttestation}, Mark: mark(t, ed, 119, 0, 2, true)},
		{Key: watermark.Key{ChainID: testChain, PKH: pkhOf(bls), Kind: watermark.KindPreattestation}, Mark: mark(t, bls, 7, 3, 3, true)},
	}
	for _, r := range recs {
		if _, err := st.Commit(context.Background(), r.Key, r.Mark); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

func exportRecords(t *testing.T, cfg string) ([]watermark.Record, string) {
	t.Helper()
	out, errOut, err := runCLI(t, "", "-c", cfg, "watermarks", "export")
	if err != nil {
		t.Fatalf("export: %v (stderr %s)", err, errOut)
	}
	if !strings.Contains(errOut, "watermark records") {
		t.Fatalf("export to stdout did not report its count on stderr: %q", errOut)
	}
	var recs []watermark.Record
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("export output is not a record array: %v\n%s", err, out)
	}
	return recs, out
}

func sameRecords(t *testing.T, got, want []watermark.Record) {
	t.Helper()
	index := func(rs []watermark.Record) map[watermark.Key]watermark.Mark {
		m := make(map[watermark.Key]watermark.Mark, len(rs))
		for _, r := range rs {
			m[r.Key] = r.Mark
		}
		return m
	}
	if len(got) != len(want) || !reflect.DeepEqual(index(got), index(want)) {
		t.Fatalf("records differ:\n got %+v\nwant %+v", got, want)
	}
}

func TestWatermarksExportImportRoundTrip(t *testing.T) {
	dirA, cfgA := baseDir(t)
	want := seed(t, dirA)

	file := filepath.Join(t.TempDir(), "marks.json")
	out, _, err := runCLI(t, "", "-c", cfgA, "watermarks", "export", "-o", file)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if !strings.Contains(out, "exported 3 watermark records to "+file) {
		t.Fatalf("export output %q", out)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fromFile []watermark.Record
	if err := json.Unmarshal(data, &fromFile); err != nil {
		t.Fatalf("exported file: %v", err)
	}
	sameRecords(t, fromFile, want)

	_, cfgB := baseDir(t)
	out, _, err = runCLI(t, "", "-c", cfgB, "watermarks", "import", file)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if !strings.Contains(out, "read 3 watermark records") || !strings.Contains(out, "raised 3 watermarks") {
		t.Fatalf("import output %q", out)
	}
	gotB, text := exportRecords(t, cfgB)
	sameRecords(t, gotB, want)
	if text != string(data) {
		t.Fatalf("second export differs from the first:\n%s\nvs\n%s", text, data)
	}

	// Importing the same file again raises nothing.
	out, _, err = runCLI(t, "", "-c", cfgB, "watermarks", "import", file)
	if err != nil || !strings.Contains(out, "raised 0 watermarks (3 unchanged)") {
		t.Fatalf("re-import: %v, output %q", err, out)
	}
}

func TestWatermarksImportNeverLowers(t *testing.T) {
	dir, cfg := baseDir(t)
	want := seed(t, dir)

	ed, bls := sharedKeys[0], sharedKeys[1]
	lower := []watermark.Record{
		// Lower level than the recorded block mark.
		{Key: want[0].Key, Mark: mark(t, ed, 100, 5, 9, true)},
		// Same level and round, different digest: kept as recorded.
		{Key: want[1].Key, Mark: mark(t, ed, 119, 0, 8, false)},
		// Higher: raised.
		{Key: want[2].Key, Mark: mark(t, bls, 8, 0, 7, true)},
	}
	data, err := json.Marshal(lower)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, string(data), "-c", cfg, "watermarks", "import", "-")
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if !strings.Contains(out, "read 3 watermark records from standard input, raised 1 watermarks (2 unchanged)") {
		t.Fatalf("import output %q", out)
	}
	got, _ := exportRecords(t, cfg)
	sameRecords(t, got, []watermark.Record{want[0], want[1], lower[2]})
}

func TestWatermarksImportMalformed(t *testing.T) {
	_, cfg := baseDir(t)
	cases := map[string]struct{ body, want string }{
		"truncated":   {`[{"chain_id":"NetXdQprcVkpaWU",`, "invalid JSON"},
		"object":      {`{"chain_id":"NetXdQprcVkpaWU"}`, "invalid JSON"},
		"null":        {`null`, "got null"},
		"empty":       {``, "empty"},
		"trailing":    {`[] []`, "trailing data"},
		"bad digest":  {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"block","level":1,"round":0,"digest":"zz"}]`, "record 1"},
		"bad kind":    {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"generic","level":1,"round":0,"digest":"` + strings.Repeat("00", 32) + `"}]`, "carries no watermark"},
		"bad chain":   {`[{"chain_id":"nope","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"block","level":1,"round":0,"digest":"` + strings.Repeat("00", 32) + `"}]`, "invalid chain id"},
		"negative":    {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"block","level":-1,"round":0,"digest":"` + strings.Repeat("00", 32) + `"}]`, "invalid level"},
		"wrong types": {`[{"chain_id":1}]`, "record 1"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "in.json")
			if err := os.WriteFile(file, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCLI(t, "", "-c", cfg, "watermarks", "import", file)
			if err == nil {
				t.Fatal("malformed input accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q should name the file and say %q", err, c.want)
			}
		})
	}
	// Nothing was written.
	got, _ := exportRecords(t, cfg)
	if len(got) != 0 {
		t.Fatalf("malformed imports left records: %+v", got)
	}
	if _, _, err := runCLI(t, "", "-c", cfg, "watermarks", "import", filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestWatermarksLockedByDaemon(t *testing.T) {
	dir, cfg := baseDir(t)
	// Hold the directory lock as a running daemon does.
	st, err := wmfile.Open(wmfile.Config{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, args := range [][]string{{"watermarks", "export"}, {"watermarks", "import", "-"}} {
		_, _, err := runCLI(t, "[]", append([]string{"-c", cfg}, args...)...)
		if err == nil {
			t.Fatalf("%v succeeded while the store was locked", args)
		}
		for _, want := range []string{"in use by another process", "daemon", "stop it"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("%v: error %q should say %q", args, err, want)
			}
		}
	}
}

func TestWatermarksExportEmpty(t *testing.T) {
	_, cfg := baseDir(t)
	out, _, err := runCLI(t, "", "-c", cfg, "watermarks", "export")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty export %q, want []", out)
	}
}

// Import checks every recorded signature against its key before storing
// anything: a garbage signature, one by another key, one over another
// digest, or a record for a key this signer does not hold fails the whole
// import, naming the record, and nothing is stored.
func TestWatermarksImportVerifiesSignatures(t *testing.T) {
	e := newSignerEnv(t)
	ed, bls := e.keys[0], e.keys[1]
	good := watermark.Record{Key: watermark.Key{ChainID: testChain, PKH: pkhOf(ed), Kind: watermark.KindBlock}, Mark: mark(t, ed, 50, 0, 1, true)}
	otherKey := good
	otherKey.Key.Kind = watermark.KindAttestation
	other, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	otherKey.Mark = mark(t, other, 51, 0, 1, true)
	otherDigest := good
	otherDigest.Key.Kind = watermark.KindPreattestation
	otherDigest.Digest[0] ^= 0xff
	unknown := watermark.Record{Key: watermark.Key{ChainID: testChain, PKH: pkhOf(other), Kind: watermark.KindBlock}, Mark: mark(t, other, 9, 0, 1, true)}
	blsGood := watermark.Record{Key: watermark.Key{ChainID: testChain, PKH: pkhOf(bls), Kind: watermark.KindAttestation}, Mark: mark(t, bls, 60, 1, 2, true)}
	for name, bad := range map[string]watermark.Record{"signed by another key": otherKey, "another digest": otherDigest, "key not held": unknown} {
		t.Run(name, func(t *testing.T) {
			data, _ := json.Marshal([]watermark.Record{good, blsGood, bad})
			_, _, err := runCLI(t, string(data), "-c", e.cfg, "--timeout", "10s", "watermarks", "import", "-")
			if err == nil || !strings.Contains(err.Error(), "record 3") || !strings.Contains(err.Error(), "nothing was imported") {
				t.Fatalf("import of a bad record: %v", err)
			}
			if got, _ := exportRecords(t, e.cfg); len(got) != 0 {
				t.Fatalf("a refused import stored %d records", len(got))
			}
		})
	}
	garbage := `[{"chain_id":"` + testChain + `","pkh":"` + pkhOf(ed) + `","kind":"block","level":1,"round":0,"digest":"` + strings.Repeat("00", 32) + `","signature":"not-a-signature"}]`
	if _, _, err := runCLI(t, garbage, "-c", e.cfg, "watermarks", "import", "-"); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("garbage signature: %v", err)
	}
	data, _ := json.Marshal([]watermark.Record{good, blsGood})
	if out, _, err := runCLI(t, string(data), "-c", e.cfg, "--timeout", "10s", "watermarks", "import", "-"); err != nil || !strings.Contains(out, "raised 2") {
		t.Fatalf("valid import: %v %q", err, out)
	}
}

// `watermarks export -o LINK` replaced the link's target (any file the
// link pointed at); a link at -o is refused and both stay as they were.
func TestWatermarksExportRefusesSymlink(t *testing.T) {
	dir, cfg := baseDir(t)
	seed(t, dir)
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "marks.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCLI(t, "", "-c", cfg, "watermarks", "export", "-o", link)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("export -o LINK: %v, want a refusal naming the symbolic link", err)
	}
	if data, _ := os.ReadFile(target); string(data) != "precious\n" {
		t.Fatalf("the link's target was overwritten: %q", data)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v", err)
	}
	// A plain path still works.
	plain := filepath.Join(t.TempDir(), "marks.json")
	if _, _, err := runCLI(t, "", "-c", cfg, "watermarks", "export", "-o", plain); err != nil {
		t.Fatal(err)
	}
}

// A chain id or key hash whose base58check checksum does not hold (a typo
// in a hand-edited file) was imported as a mark for a chain that does not
// exist; it is refused, naming the record, and nothing is imported.
func TestWatermarksImportRefusesBadChecksums(t *testing.T) {
	_, cfg := baseDir(t)
	digest := strings.Repeat("00", 32)
	for name, c := range map[string]struct{ body, want string }{
		"chain id":  {`[{"chain_id":"NetXdQprcVkpaWV","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"block","level":1,"round":0,"digest":"` + digest + `"}]`, "bad checksum"},
		"key hash":  {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjc","kind":"block","level":1,"round":0,"digest":"` + digest + `"}]`, "bad checksum"},
		"not a net": {`[{"chain_id":"Net111111111111","pkh":"tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb","kind":"block","level":1,"round":0,"digest":"` + digest + `"}]`, "invalid chain id"},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "in.json")
			if err := os.WriteFile(file, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCLI(t, "", "-c", cfg, "watermarks", "import", file)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "record 1") {
				t.Fatalf("import: %v, want %q naming record 1", err, c.want)
			}
		})
	}
	if got, _ := exportRecords(t, cfg); len(got) != 0 {
		t.Fatalf("records were imported: %+v", got)
	}
}

// `watermarks export --witness` writes the witness's marks in the import
// format (no signatures); without a witness it says so.
func TestWatermarksExportWitness(t *testing.T) {
	dir, cfg := baseDir(t)
	if _, _, err := runCLI(t, "", "-c", cfg, "watermarks", "export", "--witness"); err == nil || !strings.Contains(err.Error(), "no watermark witness at "+filepath.Join(dir, "witness", "marks.log")) {
		t.Fatalf("export --witness without a witness: %v", err)
	}
	recs := seed(t, dir)
	w, err := witness.Open(dir, witness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		r.Signature = ""
		if err := w.Witness(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon holds the witness's lock: export --witness reads it
	// anyway.
	defer w.Close()
	out, _, err := runCLI(t, "", "-c", cfg, "watermarks", "export", "--witness")
	if err != nil {
		t.Fatal(err)
	}
	var got []watermark.Record
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].Signature = ""
	}
	sameRecords(t, got, recs)
	if strings.Contains(out, "signature") {
		t.Fatalf("the witness export carries signatures: %s", out)
	}
}
