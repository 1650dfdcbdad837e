package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sigil-signer/sigil/integration/harness"
)

// The watermark witness against the shared backends (issue 18): a daemon
// records locally the highest mark it committed; a backend found behind it
// at start — a Firestore collection emptied, a DynamoDB table dropped or
// misnamed — refuses consensus signing for the keys concerned (or, for a
// missing table, the start), with the key, both marks and how to proceed;
// the ways to proceed work, and the explicit override is logged.

// startArgs starts the daemon with extra serve arguments.
func (n *node) startArgs(args ...string) *daemon {
	n.t.Helper()
	n.writeConfig()
	h := harness.StartDaemon(n.t, harness.DaemonOptions{Name: "sigil-" + n.name, Binary: sigilBin(n.t),
		Args: append([]string{"serve", "-c", n.cfg}, args...), Env: n.env})
	return &daemon{proc: h.Process, url: h.API, keys: h.Keys}
}

// healthz returns the utility listener's /healthz status and body; the
// utility address is read from the daemon's start line.
func (d *daemon) healthz(t *testing.T) (int, string) {
	t.Helper()
	i := strings.Index(d.proc.Log(), "utility_address=")
	if i < 0 {
		t.Fatal("no utility_address in the log")
	}
	addr := strings.Fields(d.proc.Log()[i+len("utility_address="):])[0]
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func expectStatus(t *testing.T, what string, r signResult, status int, want ...string) {
	t.Helper()
	if r.err != nil && status == http.StatusOK {
		t.Fatalf("%s: %v", what, r.err)
	}
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	for _, w := range want {
		if !strings.Contains(r.body, w) {
			t.Fatalf("%s: the answer does not say %q: %s", what, w, r.body)
		}
	}
}

// restoreFromWitness runs the documented way back: the witness's marks
// exported and imported into the backend.
func (n *node) restoreFromWitness(t *testing.T) {
	t.Helper()
	marks := filepath.Join(t.TempDir(), "marks.json")
	out := n.mustRun("", "watermarks", "export", "--witness", "-o", marks)
	if !strings.Contains(out, "exported 1 watermark records") {
		t.Fatalf("export --witness: %s", out)
	}
	out = n.mustRun("", "watermarks", "import", marks)
	if !strings.Contains(out, "raised 1 watermarks") {
		t.Fatalf("import: %s", out)
	}
}

func TestWitnessFirestoreCollectionEmptied(t *testing.T) {
	t.Parallel()
	fs := sharedFirestore(t)
	project := fs.NewProject(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	n := newNode(t, "witness-firestore", enc, fs.Env())
	n.watermark = firestoreSection(project) // keys stay in the file store
	pkh := n.generate("tz1")
	n.allow(pkh, "attestation")
	d := n.start()
	pk, _ := d.publicKey(t, pkh)
	d.mustSign(t, pkh, pk, attestation(100, 0, randomPayload(t)))
	d.proc.Stop()

	// Empty the project's documents (the collection of marks).
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("http://%s/emulator/v1/projects/%s/databases/(default)/documents", fs.Host(), project), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("emptying the emulator's documents: %s", resp.Status)
	}

	d = n.start()
	expectStatus(t, "a lower level after the collection was emptied", d.sign(pkh, attestation(50, 0, randomPayload(t))), http.StatusServiceUnavailable,
		pkh, "the backend holds no mark, this daemon committed level 100 round 0", "collection watermark", "watermarks import", "--accept-watermark-reset "+pkh)
	if code, body := d.healthz(t); code != http.StatusServiceUnavailable || !strings.Contains(body, "held back") {
		t.Fatalf("/healthz with a key held back: %d %s", code, body)
	}
	if !strings.Contains(d.proc.Log(), "watermark backend behind the witness") {
		t.Fatal("the start did not log the key held back")
	}

	// The way back, while the daemon runs (Firestore allows it): the
	// witness's marks imported, then a restart.
	n.restoreFromWitness(t)
	d.proc.Stop()
	d = n.start()
	expectStatus(t, "a lower level after the restore", d.sign(pkh, attestation(50, 0, randomPayload(t))), http.StatusConflict, "level 100 round 0")
	d.mustSign(t, pkh, pk, attestation(101, 0, randomPayload(t)))
	if code, body := d.healthz(t); code != http.StatusOK {
		t.Fatalf("/healthz after the restore: %d %s", code, body)
	}
	d.proc.Stop()

	// Emptied again, and this time the reset is accepted: logged, and the
	// key signs from the backend's (empty) marks.
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	d = n.startArgs("--accept-watermark-reset", pkh)
	if !strings.Contains(d.proc.Log(), "watermark reset accepted (--accept-watermark-reset)") || !strings.Contains(d.proc.Log(), pkh) {
		t.Fatalf("the accepted reset is not logged:\n%s", d.proc.Tail(20))
	}
	d.mustSign(t, pkh, pk, attestation(60, 0, randomPayload(t)))
}

func TestWitnessDynamoDBTableDropped(t *testing.T) {
	t.Parallel()
	dl := harness.StartDynalite(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	n := newNode(t, "witness-dynamodb", enc, dl.Env())
	table := dl.NewTable(t)
	n.watermark = dynamoWatermark(table) // keys stay in the file store
	pkh := n.generate("tz1")
	n.allow(pkh, "attestation")
	d := n.start()
	pk, _ := d.publicKey(t, pkh)
	if !strings.Contains(d.proc.Log(), "DynamoDB table created") {
		t.Fatal("a first start (no witness yet) creates the table, as Signatory does")
	}
	d.mustSign(t, pkh, pk, attestation(100, 0, randomPayload(t)))
	d.proc.Stop()

	refused := func(what string) {
		t.Helper()
		r := n.run("", "serve")
		if r.code == 0 {
			t.Fatalf("%s: the daemon started", what)
		}
		for _, want := range []string{"the table does not exist, and is not created", "watermark witness", "holds 1", "watermarks import"} {
			if !strings.Contains(r.stderr, want) {
				t.Fatalf("%s: the refusal does not say %q:\n%s", what, want, r.stderr)
			}
		}
	}
	// A typo in the table name: refused, nothing created.
	n.watermark = dynamoWatermark(table + "-typo")
	refused("a misnamed table")
	if _, err := dl.Client().DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(table + "-typo")}); err == nil {
		t.Fatal("the misnamed table was created")
	}
	// The table dropped: refused, not re-created empty.
	n.watermark = dynamoWatermark(table)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := dl.Client().DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
		t.Fatal(err)
	}
	refused("a dropped table")
	// Export never creates it either.
	if r := n.run("", "watermarks", "export"); r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("export of a missing table: %d %s", r.code, r.stderr)
	}

	// The way back: import (which creates the table) of the witness's
	// marks; the daemon then starts and refuses the lower level.
	n.restoreFromWitness(t)
	d = n.start()
	expectStatus(t, "a lower level after the restore", d.sign(pkh, attestation(50, 0, randomPayload(t))), http.StatusConflict, "level 100 round 0")
	d.mustSign(t, pkh, pk, attestation(101, 0, randomPayload(t)))
	d.proc.Stop()

	// Or start anew deliberately: an empty import creates the table, the
	// key is held back, and the explicit reset lets it sign (logged).
	if _, err := dl.Client().DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(empty, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.mustRun("", "watermarks", "import", empty)
	d = n.start()
	expectStatus(t, "the empty table", d.sign(pkh, attestation(50, 0, randomPayload(t))), http.StatusServiceUnavailable,
		"the backend holds no mark, this daemon committed level 101 round 0")
	d.proc.Stop()
	d = n.startArgs("--accept-watermark-reset", pkh)
	if !strings.Contains(d.proc.Log(), "watermark reset accepted") {
		t.Fatalf("the accepted reset is not logged:\n%s", d.proc.Tail(20))
	}
	d.mustSign(t, pkh, pk, attestation(50, 0, randomPayload(t)))
}
