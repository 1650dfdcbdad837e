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

// families returns, from a scrape, each family's label names (of its
// first sample; histograms by their _count series).
func families(t *testing.T, m *metrics.Metrics) map[string][]string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	out := map[string][]string{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) == 0 {
			continue
		}
		var names []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			names = append(names, lp.GetName())
		}
		out[mf.GetName()] = names
	}
	return out
}

// TestSignatoryFamilies feeds one event of each kind and checks that every
// family of Signatory's pkg/metrics is exported with its label names.
func TestSignatoryFamilies(t *testing.T) {
	m := metrics.New(metrics.Options{WatermarkBackend: "file"})
	m.SetKeys(func(a string) bool { return a == "tz1a" })
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "generic", Ops: map[string]int{"transaction": 2}, Duration: 3 * time.Millisecond})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Duration: time.Millisecond})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "block", ChainID: "NetXdQprcVkpaWU", Err: domain.Errorf(domain.KindUnavailable, "down")})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "block", Err: errors.New("boom")})
	m.ObservePolicy(ports.PolicyEvent{Address: "tz1a", Request: "generic", Violation: ports.ViolationOperation})
	m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Round: 2, Outcome: ports.WatermarkAccepted, Duration: time.Millisecond})
	m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Round: 2, Outcome: ports.WatermarkRejected, Reason: ports.ReasonNotAbove})
	m.ObserveWatermarkIO(ports.WatermarkIOEvent{Backend: "file", Operation: "write", Duration: time.Millisecond})
	m.ObserveWatermarkIO(ports.WatermarkIOEvent{Backend: "file", Operation: "write", Err: errors.New("disk"), ErrorType: "io"})
	m.SignHandled("tz1a", 200, 5*time.Millisecond)
	m.SignHandled("tz1a", 409, time.Millisecond)
	m.AuthenticationFailed(401, "authorized_keys", "127.0.0.1")

	got := families(t, m)
	for name, labels := range metrics.SignatoryFamilies {
		require.Contains(t, got, name)
		assert.ElementsMatch(t, labels, got[name], name)
	}
	assert.Contains(t, got, "sigil_build_info")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, want := range []string{
		`signing_ops_total{address="tz1a",chain_id="",kind="transaction",op="generic",vault="cs"} 2`,
		`vault_sign_request_error_total{chain_id="NetXdQprcVkpaWU",code="503",vault="cs"} 1`,
		`sign_handler_requests_total{address="tz1a",status="409"} 1`,
		`consensus_round_total{address="tz1a",chain_id="NetXdQprcVkpaWU",operation_type="attestation",round="2"} 1`,
		`watermark_rejection_total{address="tz1a",chain_id="NetXdQprcVkpaWU",operation_type="attestation",reason="not_above_watermark"} 1`,
		`watermark_operations_total{backend="file",request_type="attestation",result="rejected"} 1`,
		`watermark_io_errors_total{backend="file",error_type="io",operation="write",table_name=""} 1`,
		`policy_violation_total{address="tz1a",operation_type="generic",violation_type="operation_kind"} 1`,
		`authentication_failure_total{auth_method="authorized_keys",client_ip="127.0.0.1",status="401"} 1`,
		`go_goroutines`,
	} {
		assert.True(t, strings.Contains(out, want), "missing %s", want)
	}
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
	m := metrics.New(metrics.Options{})
	m.SetKeys(func(a string) bool { return a == "tz1held" })
	m.SignHandled("tz1held", 200, time.Millisecond)
	m.SignHandled("tz1random", 404, time.Millisecond)
	before := seriesCount(t, m)
	huge := strings.Repeat("x", 1<<20)
	for i := range 20000 {
		m.SignHandled(fmt.Sprintf("tz1random%d", i), 404, time.Millisecond)
		m.SignHandled(huge, 400, time.Millisecond)
	}
	for i := range 100 {
		m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1held", Request: "attestation", ChainID: fmt.Sprintf("Net%012d", i), Duration: time.Millisecond})
	}
	after := seriesCount(t, m)
	// The 404s and 400s fold into one address value; only new status
	// codes (400, in the three per-status families), at most 17 chain id
	// values (16 + "other") × the two per-chain families, and the held
	// key's one sigil_enclave_sign_duration_seconds series may appear.
	assert.LessOrEqual(t, after-before, 3+2*17+1, "series grew with client input")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Less(t, rec.Body.Len(), 64<<10, "/metrics stays small")
	assert.NotContains(t, rec.Body.String(), "tz1random")
	assert.Contains(t, rec.Body.String(), `chain_id="other"`)
}
