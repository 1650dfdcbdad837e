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

// dynamoStorage is a vault storage section keeping keys in DynamoDB table.
func dynamoStorage(table string) map[string]any {
	return map[string]any{"driver": "dynamodb", "config": map[string]any{"table": table}}
}

// dynamoWatermark is a Signatory-style `watermark: {driver: aws, …}`
// section on table.
func dynamoWatermark(table string) map[string]any {
	return map[string]any{"driver": "aws", "config": map[string]any{"table": table, "region": harness.DynaliteRegion}}
}

// TestDoubleSignAcrossDaemonsDynamoDB sends 64 concurrent conflicting
// attestations (same level and round, different payload hashes) split
// across two daemons sharing one DynamoDB watermark table (and one key
// table): exactly one is signed, every other answer is 409, and the
// identical retry of the winner on the other daemon gets the same signature.
func TestDoubleSignAcrossDaemonsDynamoDB(t *testing.T) {
	t.Parallel()
	dl := harness.StartDynalite(t)
	keys, marks := dl.NewTable(t), dl.NewTable(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	a := newNode(t, "a", enc, dl.Env())
	b := newNode(t, "b", enc, dl.Env())
	for _, n := range []*node{a, b} {
		n.storage = dynamoStorage(keys)
		n.watermark = dynamoWatermark(marks)
	}
	pkh := a.generate("tz1")
	a.allow(pkh, "attestation")
	b.allow(pkh, "attestation")
	da, db := a.start(), b.start()
	pk, status := db.publicKey(t, pkh)
	if status != http.StatusOK {
		t.Fatalf("daemon B does not serve %s from the shared key table: %d", pkh, status)
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

	other := daemons[(winner+1)%2]
	if r := other.sign(pkh, msgs[winner]); r.status != http.StatusOK || r.sig != won {
		t.Fatalf("identical retry on the other daemon: %d %q (%s), want 200 %s", r.status, r.sig, r.body, won)
	}
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

// TestSignDuringDynamoDBOutage stops the (private) dynalite under a running
// daemon whose watermarks are in DynamoDB: a consensus request fails with
// 503 naming DynamoDB and returns no signature; once DynamoDB is back, the
// mark recorded before the outage still holds and the level whose commit
// failed is signed afresh (nothing was recorded for it).
func TestSignDuringDynamoDBOutage(t *testing.T) {
	t.Parallel()
	dl := harness.StartPrivateDynalite(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	n := newNode(t, "dynamo-outage", enc, dl.Env())
	n.storage = dynamoStorage(dl.NewTable(t))
	n.watermark = dynamoWatermark(dl.NewTable(t))
	pkh := n.generate("tz1")
	n.allow(pkh, "attestation")
	d := n.start()
	pk, _ := d.publicKey(t, pkh)

	const level = 7000
	before := attestation(level, 0, randomPayload(t))
	d.mustSign(t, pkh, pk, before)

	dl.Stop()
	during := attestation(level+1, 0, randomPayload(t))
	r := d.sign(pkh, during)
	t.Logf("sign with DynamoDB down: %d %s", r.status, r.body)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("sign with DynamoDB down: status %d, want 503: %s", r.status, r.body)
	}
	if r.sig != "" || strings.Contains(r.body, `"signature"`) {
		t.Fatalf("a signature left the daemon without a durable mark: %s", r.body)
	}
	for _, want := range []string{"DynamoDB", "dynamodb watermark", "table "} {
		if !strings.Contains(r.body, want) {
			t.Fatalf("503 body should mention %q: %s", want, r.body)
		}
	}

	if err := dl.Restart(); err != nil {
		t.Fatal(err)
	}
	conflict := d.sign(pkh, attestation(level, 0, randomPayload(t)))
	if conflict.status != http.StatusConflict {
		t.Fatalf("conflicting attestation at the pre-outage mark: %d %s, want 409", conflict.status, conflict.body)
	}
	again := attestation(level+1, 0, randomPayload(t))
	d.mustSign(t, pkh, pk, again)
	if r := d.sign(pkh, during); r.status != http.StatusConflict {
		t.Fatalf("the request that failed during the outage, after another was signed at its level: %d %s, want 409", r.status, r.body)
	}
}
