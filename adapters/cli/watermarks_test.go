package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	wmfile "github.com/sigil-signer/sigil/adapters/watermark/file"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain/watermark"
)

const (
	testChain = "NetXdQprcVkpaWU"
	testPKH1  = "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb"
	testPKH2  = "tz4HVR6aty9KwsQFHh81C1G7gBdhxT8kuytm"
)

// baseDir returns a fresh base directory and a config file using it with
// the default (file) watermark backend.
func baseDir(t *testing.T) (dir, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
	cfgPath = filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte("base_dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath
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

func digest(b byte) (d [32]byte) {
	for i := range d {
		d[i] = b
	}
	return d
}

// seed records marks in dir's file store as a daemon would.
func seed(t *testing.T, dir string) []watermark.Record {
	t.Helper()
	st, err := wmfile.Open(wmfile.Config{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs := []watermark.Record{
		{Key: watermark.Key{ChainID: testChain, PKH: testPKH1, Kind: watermark.KindBlock}, Mark: watermark.Mark{Level: 120, Round: 1, Digest: digest(1), Signature: watermarktest.Sig("edsigAAA")}},
		{Key: watermark.Key{ChainID: testChain, PKH: testPKH1, Kind: watermark.KindAttestation}, Mark: watermark.Mark{Level: 119, Round: 0, Digest: digest(2), Signature: watermarktest.Sig("edsigBBB")}},
		{Key: watermark.Key{ChainID: testChain, PKH: testPKH2, Kind: watermark.KindPreattestation}, Mark: watermark.Mark{Level: 7, Round: 3, Digest: digest(3), Signature: watermarktest.Sig("BLsigCCC")}},
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

	lower := []watermark.Record{
		// Lower level than the recorded block mark.
		{Key: want[0].Key, Mark: watermark.Mark{Level: 100, Round: 5, Digest: digest(9), Signature: watermarktest.Sig("edsigLOW")}},
		// Same level and round, different digest: kept as recorded.
		{Key: want[1].Key, Mark: watermark.Mark{Level: 119, Round: 0, Digest: digest(8)}},
		// Higher: raised.
		{Key: want[2].Key, Mark: watermark.Mark{Level: 8, Round: 0, Digest: digest(7), Signature: watermarktest.Sig("BLsigDDD")}},
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
		"bad digest":  {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"` + testPKH1 + `","kind":"block","level":1,"round":0,"digest":"zz"}]`, "record 1"},
		"bad kind":    {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"` + testPKH1 + `","kind":"generic","level":1,"round":0,"digest":"` + strings.Repeat("00", 32) + `"}]`, "carries no watermark"},
		"bad chain":   {`[{"chain_id":"nope","pkh":"` + testPKH1 + `","kind":"block","level":1,"round":0,"digest":"` + strings.Repeat("00", 32) + `"}]`, "invalid chain id"},
		"negative":    {`[{"chain_id":"NetXdQprcVkpaWU","pkh":"` + testPKH1 + `","kind":"block","level":-1,"round":0,"digest":"` + strings.Repeat("00", 32) + `"}]`, "invalid level"},
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
