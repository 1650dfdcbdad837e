package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/ports"
)

// TestSignatoryNames checks the exported series carry Signatory's metric
// names and labels, so existing dashboards keep working.
func TestSignatoryNames(t *testing.T) {
	m := metrics.New()
	m.SetKeys(func(a string) bool { return a == "tz1a" })
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "generic", Ops: map[string]int{"transaction": 2}, Duration: 3 * time.Millisecond})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Duration: time.Millisecond})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "block", ChainID: "NetXdQprcVkpaWU", Err: domain.Errorf(domain.KindUnavailable, "down")})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "block", Err: errors.New("boom")})
	m.SignHandled("tz1a", 200, "generic", 5*time.Millisecond)
	m.SignHandled("tz1a", 409, "attestation", time.Millisecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, want := range []string{
		`signing_ops_total{address="tz1a",chain_id="",kind="transaction",op="generic",vault="cs"} 2`,
		`signing_ops_total{address="tz1a",chain_id="NetXdQprcVkpaWU",kind="attestation",op="attestation",vault="cs"} 1`,
		`vault_sign_request_duration_milliseconds_count{address="tz1a",chain_id="",op="generic",vault="cs"} 1`,
		`vault_sign_request_duration_milliseconds_sum{address="tz1a",chain_id="",op="generic",vault="cs"} 3`,
		`vault_sign_request_error_total{chain_id="NetXdQprcVkpaWU",code="503",vault="cs"} 1`,
		`vault_sign_request_error_total{chain_id="",code="500",vault="cs"} 1`,
		`sign_handler_requests_total{address="tz1a",request_type="generic",result="success"} 1`,
		`sign_handler_requests_total{address="tz1a",request_type="attestation",result="failure"} 1`,
		`sign_handler_request_duration_milliseconds_count{address="tz1a",status="409"} 1`,
		`go_goroutines`,
	} {
		assert.True(t, strings.Contains(out, want), "missing %s", want)
	}
	require.Equal(t, 200, rec.Code)
}

func seriesCount(t *testing.T, m *metrics.Metrics) int {
	t.Helper()
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// Label values come from bounded sets: requests naming 20,000 addresses the
// signer does not hold (random, malformed or huge) add no series, and chain
// ids beyond the first few share one "other" value.
func TestLabelsAreBounded(t *testing.T) {
	m := metrics.New()
	m.SetKeys(func(a string) bool { return a == "tz1held" })
	m.SignHandled("tz1held", 200, "generic", time.Millisecond)
	m.SignHandled("tz1random", 404, "unknown", time.Millisecond)
	before := seriesCount(t, m)
	huge := strings.Repeat("x", 1<<20)
	for i := range 20000 {
		m.SignHandled(fmt.Sprintf("tz1random%d", i), 404, "unknown", time.Millisecond)
		m.SignHandled(huge, 400, "unknown", time.Millisecond)
	}
	for i := range 100 {
		m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1held", Request: "attestation", ChainID: fmt.Sprintf("Net%012d", i), Duration: time.Millisecond})
	}
	after := seriesCount(t, m)
	// The 404s and 400s fold into one address value; only new status
	// codes (400) and at most 17 chain id values (16 + "other") × the
	// two per-chain families may appear.
	assert.LessOrEqual(t, after-before, 2+2*17, "series grew with client input")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Less(t, rec.Body.Len(), 64<<10, "/metrics stays small")
	assert.NotContains(t, rec.Body.String(), "tz1random")
	assert.Contains(t, rec.Body.String(), `chain_id="other"`)
}
