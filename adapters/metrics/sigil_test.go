package metrics_test

import (
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/ports"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// sampleValue returns the value of the sample whose line starts with
// series (name and labels as exported), or fails.
func sampleValue(t *testing.T, out, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			require.NoError(t, err, line)
			return v
		}
	}
	t.Fatalf("no sample %s in:\n%s", series, out)
	return 0
}

// TestSigilFamilies feeds the pool stats, enclave requests, sign requests
// and consensus signatures, and checks every sigil_* family with its labels
// and values.
func TestSigilFamilies(t *testing.T) {
	m := metrics.New(metrics.Options{WatermarkBackend: "file"})
	m.SetKeys(func(a string) bool { return a == "tz1a" || a == "tz1b" })
	stats := ports.EnclavePoolStats{Connections: 4, Up: 3, Redials: 7, KeysLoaded: 2, KeysUnopened: 1}
	obs := m.AddEnclavePool("cs", func() ports.EnclavePoolStats { return stats })
	obs.ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: "Sign", Duration: 300 * time.Microsecond})
	obs.ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: "Sign", Duration: 2 * time.Second, Failure: ports.EnclaveFailureTimeout})
	obs.ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: "Import", Duration: time.Millisecond, Failure: ports.EnclaveFailureError})
	out0 := scrape(t, m)
	assert.Equal(t, 0.0, sampleValue(t, out0, `sigil_enclave_bad_signatures_total{vault="cs"}`), "exported at 0 from the start")
	obs.ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: "Sign", Duration: time.Millisecond, Failure: ports.EnclaveFailureBadSignature})
	obs.ObserveEnclaveRPC(ports.EnclaveRPCEvent{Method: "none", Failure: ports.EnclaveFailureUnsolicited})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1a", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Duration: 700 * time.Microsecond})
	m.ObserveSign(ports.SignEvent{Vault: "cs", Address: "tz1random", Request: "attestation", ChainID: "NetXdQprcVkpaWU", Duration: 700 * time.Microsecond})
	m.SignHandled("tz1a", 200, 2*time.Millisecond)
	m.SetConsensusKeys(func() []string { return []string{"tz1a", "tz1b"} })
	before := time.Now()
	m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1a", Request: "attestation", Consensus: true, ChainID: "NetXdQprcVkpaWU"})
	// A refusal is not a signature.
	m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1b", Request: "attestation", Consensus: true, ChainID: "NetXdQprcVkpaWU",
		Err: domain.Errorf(domain.KindConflict, "not above")})

	got := families(t, m)
	for name, labels := range metrics.SigilFamilies {
		require.Contains(t, got, name)
		assert.ElementsMatch(t, labels, got[name], name)
	}
	out := scrape(t, m)
	assert.Equal(t, 3.0, sampleValue(t, out, `sigil_enclave_connections{state="up",vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_connections{state="down",vault="cs"}`))
	assert.Equal(t, 7.0, sampleValue(t, out, `sigil_enclave_redials_total{vault="cs"}`))
	assert.Equal(t, 2.0, sampleValue(t, out, `sigil_enclave_keys_loaded{vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_keys_unopened{vault="cs"}`))
	assert.Equal(t, 3.0, sampleValue(t, out, `sigil_enclave_rpc_duration_seconds_count{method="Sign",vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_rpc_duration_seconds_bucket{method="Sign",vault="cs",le="0.0004"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_rpc_errors_total{cause="timeout",method="Sign",vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_rpc_errors_total{cause="enclave_error",method="Import",vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_rpc_errors_total{cause="bad_signature",method="Sign",vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_bad_signatures_total{vault="cs"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_rpc_errors_total{cause="unsolicited",method="none",vault="cs"}`))
	assert.NotContains(t, out, `sigil_enclave_rpc_duration_seconds_count{method="none"`, "no request, no duration")
	// Per key, buckets finer than Signatory's first (10 ms).
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_sign_duration_seconds_count{address="tz1a",vault="cs"}`))
	assert.Equal(t, 0.0, sampleValue(t, out, `sigil_enclave_sign_duration_seconds_bucket{address="tz1a",vault="cs",le="0.0004"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_enclave_sign_duration_seconds_bucket{address="tz1a",vault="cs",le="0.0008"}`))
	assert.NotContains(t, out, "tz1random", "only held keys are labels")
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_sign_request_duration_seconds_count{address="tz1a",status="200"}`))
	assert.Equal(t, 0.0, sampleValue(t, out, `sigil_sign_request_duration_seconds_bucket{address="tz1a",status="200",le="0.0016"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_sign_request_duration_seconds_bucket{address="tz1a",status="200",le="0.0032"}`))

	// tz1a signed just now; tz1b has not: its series holds the time it
	// was first exported, and keeps it.
	a := sampleValue(t, out, `sigil_consensus_last_signature_timestamp_seconds{address="tz1a"}`)
	b := sampleValue(t, out, `sigil_consensus_last_signature_timestamp_seconds{address="tz1b"}`)
	assert.InDelta(t, float64(before.UnixNano())/1e9, a, 5)
	assert.GreaterOrEqual(t, b, a)
	time.Sleep(20 * time.Millisecond)
	out = scrape(t, m)
	assert.Equal(t, b, sampleValue(t, out, `sigil_consensus_last_signature_timestamp_seconds{address="tz1b"}`), "first-export time must not move")
	m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1b", Request: "block", Consensus: true, ChainID: "NetXdQprcVkpaWU"})
	out = scrape(t, m)
	assert.Greater(t, sampleValue(t, out, `sigil_consensus_last_signature_timestamp_seconds{address="tz1b"}`), b)
	// An unknown address never gets a series.
	m.ObserveSign(ports.SignEvent{Vault: "ConfidentialSpace", Address: "tz1zzz", Request: "block", Consensus: true})
	assert.NotContains(t, scrape(t, m), "tz1zzz")
}

// The enclave observer is on the request path: a success allocates
// nothing.
func TestEnclaveObserverDoesNotAllocate(t *testing.T) {
	m := metrics.New(metrics.Options{})
	obs := m.AddEnclavePool("cs", func() ports.EnclavePoolStats { return ports.EnclavePoolStats{} })
	ev := ports.EnclaveRPCEvent{Method: "Sign", Duration: time.Millisecond}
	if n := testing.AllocsPerRun(1000, func() { obs.ObserveEnclaveRPC(ev) }); n != 0 {
		t.Errorf("ObserveEnclaveRPC allocates %v times per call", n)
	}
}
