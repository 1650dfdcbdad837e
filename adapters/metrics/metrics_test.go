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
	m.ObserveSign(ports.SignEvent{Vault: "File", Address: "tz1a", Request: "generic", Ops: map[string]int{"transaction": 2}, Duration: 3 * time.Millisecond})
	m.ObserveSign(ports.SignEvent{Vault: "File", Address: "tz1a", Request: "attestation", Consensus: true, ChainID: "NetXdQprcVkpaWU", Round: 2})
	m.ObserveSign(ports.SignEvent{Vault: "File", Address: "tz1a", Request: "block", Consensus: true, ChainID: "NetXdQprcVkpaWU", Err: domain.Errorf(domain.KindConflict, "not above")})
	m.ObservePolicy(ports.PolicyEvent{Address: "tz1a", Violation: "transaction"})
	m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Outcome: ports.WatermarkRejected})
	m.ObserveWatermarkIO(ports.WatermarkIOEvent{Backend: "file", Operation: "read", Duration: time.Millisecond})
	m.ObserveWatermarkIO(ports.WatermarkIOEvent{Backend: "file", Operation: "write", Err: errors.New("disk"), ErrorType: "io"})
	m.SignHandled("tz1a", 200, 5*time.Millisecond)
	m.AuthenticationFailed(401, "authentication", "127.0.0.1")
	got := families(t, m)
	for name, labels := range metrics.SignatoryFamilies {
		require.Contains(t, got, name)
		assert.ElementsMatch(t, labels, got[name], name)
	}
	assert.Contains(t, got, "sigil_build_info")
	assert.Contains(t, got, "go_goroutines")
}

// TestSignatoryValues: each event gives exactly the series Signatory's
// pkg/metrics writes for the same request, label values included
// (Signatory's SignInterceptor, WatermarkInterceptor, PolicyViolation,
// WatermarkRejection and AuthenticationFailure call sites).
func TestSignatoryValues(t *testing.T) {
	const chain = "NetXdQprcVkpaWU"
	conflict := domain.Errorf(domain.KindConflict, "attestation level 5 round 0 is not above the recorded level 5 round 0")
	for _, c := range []struct {
		name string
		feed func(m *metrics.Metrics)
		want []string
	}{
		{"generic signed", func(m *metrics.Metrics) {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "generic", Outcome: ports.WatermarkNone})
			m.ObserveSign(ports.SignEvent{Vault: "File", Address: "tz1a", Request: "generic", Ops: map[string]int{"transaction": 2, "reveal": 1, "ballot": 1}})
		}, []string{
			`watermark_operations_total{backend="file",request_type="generic",result="success"} 1`,
			`watermark_operation_duration_seconds_count{backend="file"} 1`,
			`signing_ops_total{address="tz1a",chain_id="",kind="transaction",op="generic",vault="File"} 2`,
			`signing_ops_total{address="tz1a",chain_id="",kind="reveal",op="generic",vault="File"} 1`,
			`signing_ops_total{address="tz1a",chain_id="",kind="ballot",op="generic",vault="File"} 1`,
			`vault_sign_request_duration_milliseconds_count{address="tz1a",chain_id="",op="generic",vault="File"} 1`,
		}},
		{"pack signed", func(m *metrics.Metrics) {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "pack", Outcome: ports.WatermarkNone})
			m.ObserveSign(ports.SignEvent{Vault: "Mem", Address: "tz1a", Request: "pack"})
		}, []string{
			`watermark_operations_total{backend="file",request_type="pack",result="success"} 1`,
			`watermark_operation_duration_seconds_count{backend="file"} 1`,
			`signing_ops_total{address="tz1a",chain_id="",kind="pack",op="pack",vault="Mem"} 1`,
			`vault_sign_request_duration_milliseconds_count{address="tz1a",chain_id="",op="pack",vault="Mem"} 1`,
		}},
		{"attestation signed", func(m *metrics.Metrics) {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "attestation_with_dal", ChainID: chain, Outcome: ports.WatermarkAccepted})
			m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1a", Request: "attestation_with_dal", Consensus: true, ChainID: chain, Round: 3})
		}, []string{
			`watermark_operations_total{backend="file",request_type="attestation_with_dal",result="success"} 1`,
			`watermark_operation_duration_seconds_count{backend="file"} 1`,
			`vault_sign_request_duration_milliseconds_count{address="tz1a",chain_id="NetXdQprcVkpaWU",op="attestation_with_dal",vault="ConfidentialSpace"} 1`,
			`signing_ops_total{address="tz1a",chain_id="NetXdQprcVkpaWU",kind="attestation_with_dal",op="attestation_with_dal",vault="ConfidentialSpace"} 1`,
			`consensus_round_total{address="tz1a",chain_id="NetXdQprcVkpaWU",operation_type="attestation_with_dal",round="3"} 1`,
		}},
		{"identical repeat replayed", func(m *metrics.Metrics) {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "block", ChainID: chain, Outcome: ports.WatermarkReplayed})
			m.ObserveSign(ports.SignEvent{Vault: "NitroEnclave", Address: "tz1a", Request: "block", Consensus: true, ChainID: chain})
		}, []string{
			`watermark_operations_total{backend="file",request_type="block",result="success"} 1`,
			`watermark_operation_duration_seconds_count{backend="file"} 1`,
			`vault_sign_request_duration_milliseconds_count{address="tz1a",chain_id="NetXdQprcVkpaWU",op="block",vault="NitroEnclave"} 1`,
			`consensus_round_total{address="tz1a",chain_id="NetXdQprcVkpaWU",operation_type="block",round="0"} 1`,
			`signing_ops_total{address="tz1a",chain_id="NetXdQprcVkpaWU",kind="block",op="block",vault="NitroEnclave"} 1`,
		}},
		{"watermark refusal", func(m *metrics.Metrics) {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "attestation", ChainID: chain, Outcome: ports.WatermarkRejected})
			m.ObserveSign(ports.SignEvent{Vault: "File", Address: "tz1a", Request: "attestation", Consensus: true, ChainID: chain, Err: conflict})
		}, []string{
			`watermark_operations_total{backend="file",request_type="attestation",result="rejected"} 1`,
			`watermark_operation_duration_seconds_count{backend="file"} 1`,
			`watermark_rejection_total{address="tz1a",chain_id="NetXdQprcVkpaWU",operation_type="attestation",reason="watermark validation failed"} 1`,
			`vault_sign_request_error_total{chain_id="NetXdQprcVkpaWU",code="409",vault="File"} 1`,
		}},
		{"watermark store failure", func(m *metrics.Metrics) {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "preattestation", ChainID: chain, Outcome: ports.WatermarkFailed})
			m.ObserveSign(ports.SignEvent{Vault: "File", Address: "tz1a", Request: "preattestation", Consensus: true, ChainID: chain, Err: domain.Errorf(domain.KindUnavailable, "disk")})
		}, []string{
			`watermark_operations_total{backend="file",request_type="preattestation",result="rejected"} 1`,
			`watermark_operation_duration_seconds_count{backend="file"} 1`,
			`vault_sign_request_error_total{chain_id="NetXdQprcVkpaWU",code="503",vault="File"} 1`,
		}},
		{"vault error", func(m *metrics.Metrics) {
			m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1a", Request: "generic", Ops: map[string]int{"transaction": 1}, Err: errors.New("boom")})
		}, []string{
			`vault_sign_request_error_total{chain_id="",code="500",vault="ConfidentialSpace"} 1`,
		}},
		{"policy violations", func(m *metrics.Metrics) {
			for _, v := range []string{"generic", "transaction", "ballot:nay", ports.ViolationAuthentication, ports.ViolationPolicyHook} {
				m.ObservePolicy(ports.PolicyEvent{Address: "tz1a", Violation: v})
			}
		}, []string{
			`policy_violation_total{address="tz1a",operation_type="request",violation_type="generic"} 1`,
			`policy_violation_total{address="tz1a",operation_type="request",violation_type="transaction"} 1`,
			`policy_violation_total{address="tz1a",operation_type="request",violation_type="ballot:nay"} 1`,
			`policy_violation_total{address="tz1a",operation_type="request",violation_type="authentication"} 1`,
			`policy_violation_total{address="tz1a",operation_type="request",violation_type="policy_hook"} 1`,
		}},
		{"authentication failure", func(m *metrics.Metrics) {
			m.AuthenticationFailed(403, "authentication", "192.0.2.1")
		}, []string{
			`authentication_failure_total{auth_method="authentication",client_ip="192.0.2.1",status="403"} 1`,
		}},
		{"watermark file read", func(m *metrics.Metrics) {
			m.ObserveWatermarkIO(ports.WatermarkIOEvent{Backend: "file", Operation: "read", Duration: time.Millisecond})
		}, []string{
			`watermark_io_operations_total{backend="file",operation="read",result="success",table_name=""} 1`,
			`watermark_io_latency_seconds_count{backend="file",operation="read",table_name=""} 1`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := metrics.New(metrics.Options{WatermarkBackend: "file"})
			m.SetKeys(func(a string) bool { return a == "tz1a" })
			c.feed(m)
			out := scrapeSignatory(t, m)
			for _, w := range c.want {
				assert.Contains(t, out, w)
			}
			assert.Len(t, out, len(c.want), "no other series of Signatory's families:\n%s", strings.Join(out, "\n"))
		})
	}
}

// scrapeSignatory returns the samples of Signatory's families (histograms
// by their _count), without Go, process and build information.
func scrapeSignatory(t *testing.T, m *metrics.Metrics) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		name, _, _ := strings.Cut(line, "{")
		if strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_sum") || name == "signatory_build_info" {
			continue
		}
		if _, ok := metrics.SignatoryFamilies[strings.TrimSuffix(name, "_count")]; ok {
			out = append(out, line)
		}
	}
	return out
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

// BenchmarkObserveRequest measures the metrics of one signed request as
// the signer reports them (a watermark event and a sign event): a generic
// transaction, and an attestation.
func BenchmarkObserveRequest(b *testing.B) {
	m := metrics.New(metrics.Options{WatermarkBackend: "file"})
	m.SetKeys(func(a string) bool { return a == "tz1a" })
	ops := map[string]int{"transaction": 1}
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "generic", Outcome: ports.WatermarkNone})
			m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1a", Request: "generic", Ops: ops, Duration: time.Millisecond})
		}
	})
	b.Run("attestation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveWatermark(ports.WatermarkEvent{Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Outcome: ports.WatermarkAccepted, Duration: time.Millisecond})
			m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1a", Request: "attestation", Consensus: true, ChainID: "NetXdQprcVkpaWU", Round: 1, Duration: time.Millisecond})
		}
	})
}

// TestScrapeAsSignatory: /metrics counts its own scrapes as Signatory's
// promhttp.Handler does (requests by code, in flight; no errors family),
// and signatory_build_info writes an unknown field "(unknown)", as
// Signatory, while sigil_build_info keeps "unknown".
func TestScrapeAsSignatory(t *testing.T) {
	m := metrics.New(metrics.Options{WatermarkBackend: "file"})
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		require.Equal(t, 200, rec.Code)
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	scrape()
	out := scrape()
	assert.Contains(t, out, `promhttp_metric_handler_requests_total{code="200"} 1`)
	assert.Contains(t, out, "promhttp_metric_handler_requests_in_flight 1")
	assert.NotContains(t, out, "promhttp_metric_handler_errors_total")
	assert.Regexp(t, `signatory_build_info\{[^}]*branch="\(unknown\)"`, out)
	assert.Regexp(t, `sigil_build_info\{[^}]*branch="unknown"`, out)
}
