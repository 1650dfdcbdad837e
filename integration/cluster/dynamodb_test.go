package cluster

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

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
