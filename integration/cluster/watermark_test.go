package cluster

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/integration/harness"
)

// sharedDatabase is a database two daemons share for their keys and
// watermarks.
type sharedDatabase struct {
	name string
	// open returns, fresh for t, the daemons' environment pointing at the
	// database and their vault storage and watermark sections.
	open func(t *testing.T) (env []string, storage, watermark map[string]any)
}

var sharedDatabases = []sharedDatabase{
	{"Firestore", func(t *testing.T) ([]string, map[string]any, map[string]any) {
		fs := sharedFirestore(t)
		project := fs.NewProject(t)
		wm := map[string]any{"driver": "gcp", "config": map[string]any{"project": project, "database": "(default)"}}
		return fs.Env(), firestoreSection(project), wm
	}},
	{"DynamoDB", func(t *testing.T) ([]string, map[string]any, map[string]any) {
		dl := harness.StartDynalite(t)
		return dl.Env(), dynamoStorage(dl.NewTable(t)), dynamoWatermark(dl.NewTable(t))
	}},
}

// TestDoubleSignAcrossDaemons sends, for each shared database (Firestore,
// DynamoDB), 64 concurrent conflicting attestations (same level and round,
// different payload hashes) split across two daemons that share their key
// and watermark collection or tables: exactly one is signed, every other
// answer is 409, the identical retry of the winner on the other daemon gets
// the same signature, and the export command sees the shared mark.
func TestDoubleSignAcrossDaemons(t *testing.T) {
	t.Parallel()
	for _, database := range sharedDatabases {
		t.Run(database.name, func(t *testing.T) {
			t.Parallel()
			testDoubleSignAcrossDaemons(t, database)
		})
	}
}

func testDoubleSignAcrossDaemons(t *testing.T, shared sharedDatabase) {
	env, storage, wm := shared.open(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	a := newNode(t, "a", enc, env)
	b := newNode(t, "b", enc, env)
	for _, n := range []*node{a, b} {
		n.storage = storage
		n.watermark = wm
	}
	pkh := a.generate("tz1")
	a.allow(pkh, "attestation")
	b.allow(pkh, "attestation")
	da, db := a.start(), b.start()
	pk, status := db.publicKey(t, pkh)
	if status != http.StatusOK {
		t.Fatalf("daemon B does not serve %s from the shared keys: %d", pkh, status)
	}

	const n, level = 64, 1000
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = attestation(level, 0, randomPayload(t))
	}
	daemons := []*daemon{da, db}
	results := make([]signResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = daemons[i%2].sign(pkh, msgs[i])
		}()
	}
	close(start)
	wg.Wait()

	winner := -1
	sigs := map[string]bool{}
	conflicts := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("request %d: %v", i, r.err)
		case r.status == http.StatusOK:
			sigs[r.sig] = true
			winner = i
		case r.status == http.StatusConflict:
			conflicts++
			if !strings.Contains(r.body, "level 1000 round 0 is not above the recorded level 1000 round 0") {
				t.Errorf("request %d: 409 body does not name both marks: %s", i, r.body)
			}
		default:
			t.Errorf("request %d to daemon %c: status %d: %s", i, 'A'+i%2, r.status, r.body)
		}
	}
	if len(sigs) != 1 || conflicts != n-1 {
		t.Fatalf("%d distinct signatures and %d conflicts out of %d, want 1 and %d", len(sigs), conflicts, n, n-1)
	}
	won := results[winner].sig
	verify(t, pk, msgs[winner], won)
	t.Logf("request %d (daemon %c) won; %d conflicts", winner, 'A'+winner%2, conflicts)

	// The identical request on the other daemon gets the recorded signature.
	other := daemons[(winner+1)%2]
	if r := other.sign(pkh, msgs[winner]); r.status != http.StatusOK || r.sig != won {
		t.Fatalf("identical retry on the other daemon: %d %q (%s), want 200 %s", r.status, r.sig, r.body, won)
	}
	// And the level above is signed there.
	next := attestation(level+1, 0, randomPayload(t))
	other.mustSign(t, pkh, pk, next)

	// The shared mark, as the export command sees it while both daemons run.
	var recs []watermark.Record
	out := b.mustRun("", "watermarks", "export")
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if len(recs) != 1 || recs[0].PKH != pkh || recs[0].Kind != watermark.KindAttestation ||
		recs[0].ChainID != "NetXdQprcVkpaWU" || recs[0].Level != level+1 || recs[0].Round != 0 ||
		recs[0].Digest != tezos.Digest(next) || recs[0].Signature == "" {
		t.Fatalf("exported marks %+v, want one attestation mark at level %d for %s with its signature", recs, level+1, pkh)
	}
}

// TestWatermarkSurvivesKill9 signs an attestation with the file watermark
// backend, kills the daemon with SIGKILL right after the answer and checks
// that the restarted daemon refuses a conflicting attestation at the same
// level and round, replays the identical one, and signs the next level.
func TestWatermarkSurvivesKill9(t *testing.T) {
	t.Parallel()
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	n := newNode(t, "kill9", enc, nil)
	pkh := n.generate("tz1")
	n.allow(pkh, "attestation")
	d := n.start()
	pk, _ := d.publicKey(t, pkh)

	const level = 4242
	first := attestation(level, 1, randomPayload(t))
	sig := d.mustSign(t, pkh, pk, first)
	d.proc.Kill()
	if err := d.proc.Wait(); err == nil {
		t.Fatal("daemon exited cleanly: it was not killed")
	}

	d = n.start()
	// While the daemon runs, the file backend is locked.
	r := n.run("", "watermarks", "export")
	if r.code == 0 || !strings.Contains(r.stderr, "in use by another process") || !strings.Contains(r.stderr, "daemon") {
		t.Fatalf("export while the daemon runs: exit %d, stderr %q; want a failure saying a daemon holds the lock", r.code, r.stderr)
	}

	conflict := d.sign(pkh, attestation(level, 1, randomPayload(t)))
	if conflict.status != http.StatusConflict {
		t.Fatalf("conflicting attestation after kill -9: %d %s, want 409", conflict.status, conflict.body)
	}
	if !strings.Contains(conflict.body, "level 4242 round 1 is not above the recorded level 4242 round 1") {
		t.Fatalf("409 body does not name both marks: %s", conflict.body)
	}
	if lower := d.sign(pkh, attestation(level-1, 5, randomPayload(t))); lower.status != http.StatusConflict {
		t.Fatalf("lower level after kill -9: %d %s, want 409", lower.status, lower.body)
	}
	if again := d.sign(pkh, first); again.status != http.StatusOK || again.sig != sig {
		t.Fatalf("identical retry after kill -9: %d %q %s, want 200 %s", again.status, again.sig, again.body, sig)
	}
	d.mustSign(t, pkh, pk, attestation(level+1, 0, randomPayload(t)))

	// Stopped, the export command reads the mark.
	d.proc.Stop()
	var recs []watermark.Record
	out := n.mustRun("", "watermarks", "export")
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if len(recs) != 1 || recs[0].Level != level+1 || recs[0].Round != 0 || recs[0].PKH != pkh || recs[0].Signature == "" {
		t.Fatalf("exported marks %+v, want one at level %d round 0 with its signature", recs, level+1)
	}
}
