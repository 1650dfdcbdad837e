// Package metrics is Sigil's Prometheus adapter. It exports every metric
// family Signatory's pkg/metrics does, with the same names, types, label
// names, buckets and label values for the same requests (signing_ops_total, vault_sign_request_*,
// sign_handler_*, consensus_round_total, policy_violation_total,
// watermark_rejection_total, authentication_failure_total, watermark_*, the
// build info), so existing dashboards and alerts keep working, fed by the
// domain's events, the HTTP adapter's handler events and the watermark
// backends' I/O events. Sigil adds its own sigil_* families (sigil.go): the
// build info, the enclave connection pools' health and request latency,
// fine-grained sign latency per key and each consensus key's last signature,
// and the configuration reloads (reload.go).
// Label values come only from bounded sets, so that no client can grow the
// number of series.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/ports"
)

// Label values come only from bounded sets: an address label only names a
// key the signer holds (anything else is "unknown"), a chain id or client
// IP label is one of the first few seen (then "other"), a round above
// maxRound is "other", and the other labels come from fixed sets.
const (
	unknownLabel = "unknown"
	otherLabel   = "other"
	maxChains    = 16
	maxClientIPs = 64
	maxRound     = 31
)

// Metrics holds the collectors and their registry.
type Metrics struct {
	held      atomic.Pointer[func(string) bool]
	chains    boundedSet
	clientIPs boundedSet
	backend   string // watermark backend, for watermark_operation_*

	handlerOnce sync.Once
	handler     http.Handler

	reg               *prometheus.Registry
	signingOps        *prometheus.CounterVec
	vaultDuration     *prometheus.HistogramVec
	vaultErrors       *prometheus.CounterVec
	handlerDuration   *prometheus.HistogramVec
	handlerRequests   *prometheus.CounterVec
	consensusRounds   *prometheus.CounterVec
	policyViolations  *prometheus.CounterVec
	watermarkRejects  *prometheus.CounterVec
	authFailures      *prometheus.CounterVec
	watermarkOps      *prometheus.CounterVec
	watermarkDuration *prometheus.HistogramVec
	watermarkIOOps    *prometheus.CounterVec
	watermarkIOTime   *prometheus.HistogramVec
	watermarkIOErrors *prometheus.CounterVec
	sigil             *sigilMetrics
	reload            *reloadMetrics
}

// Options configure New.
type Options struct {
	// WatermarkBackend names the configured watermark driver (file, mem,
	// gcp, aws) for watermark_operations_total and
	// watermark_operation_duration_seconds.
	WatermarkBackend string
	// Build describes this binary for sigil_build_info and
	// signatory_build_info; empty fields are "unknown".
	Build buildinfo.Info
}

// New creates and registers the collectors on a fresh registry (with the
// Go and process collectors).
func New(o Options) *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		backend: o.WatermarkBackend,
		sigil:   newSigilMetrics(),
		reload:  newReloadMetrics(),
		signingOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signing_ops_total",
			Help: "Total number of signing operations completed.",
		}, []string{"address", "vault", "op", "kind", "chain_id"}),
		vaultDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vault_sign_request_duration_milliseconds",
			Help:    "Vaults signing requests latencies in milliseconds",
			Buckets: prometheus.ExponentialBuckets(10, 10, 5),
		}, []string{"vault", "address", "op", "chain_id"}),
		vaultErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vault_sign_request_error_total",
			Help: "Vaults signing requests error count",
		}, []string{"vault", "code", "chain_id"}),
		handlerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sign_handler_request_duration_milliseconds",
			Help:    "Total processing time for sign handler requests in milliseconds",
			Buckets: prometheus.ExponentialBuckets(10, 10, 5),
		}, []string{"address", "status"}),
		handlerRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sign_handler_requests_total",
			Help: "Total number of sign handler requests",
		}, []string{"address", "status"}),
		consensusRounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consensus_round_total",
			Help: "Total number of consensus operations signed, by round",
		}, []string{"address", "operation_type", "chain_id", "round"}),
		policyViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policy_violation_total",
			Help: "Total count of policy violations",
		}, []string{"violation_type", "address", "operation_type"}),
		watermarkRejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watermark_rejection_total",
			Help: "Total count of operations rejected due to watermark protection",
		}, []string{"address", "operation_type", "chain_id", "reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authentication_failure_total",
			Help: "Total count of authentication failures",
		}, []string{"status", "auth_method", "client_ip"}),
		watermarkOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watermark_operations_total",
			Help: "Total number of watermark operations",
		}, []string{"result", "backend", "request_type"}),
		watermarkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "watermark_operation_duration_seconds",
			Help:    "Watermark operation duration in seconds",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 10),
		}, []string{"backend"}),
		watermarkIOOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watermark_io_operations_total",
			Help: "Total number of watermark backend I/O operations",
		}, []string{"backend", "operation", "table_name", "result"}),
		watermarkIOTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "watermark_io_latency_seconds",
			Help:    "Watermark backend I/O latency in seconds",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}, []string{"backend", "operation", "table_name"}),
		watermarkIOErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watermark_io_errors_total",
			Help: "Total number of watermark backend I/O errors",
		}, []string{"backend", "error_type", "table_name", "operation"}),
	}
	m.reg.MustRegister(m.signingOps, m.vaultDuration, m.vaultErrors, m.handlerDuration, m.handlerRequests,
		m.consensusRounds, m.policyViolations, m.watermarkRejects, m.authFailures,
		m.watermarkOps, m.watermarkDuration, m.watermarkIOOps, m.watermarkIOTime, m.watermarkIOErrors,
		buildInfo("sigil_build_info", "Build information of this sigil binary.", o.Build, true),
		buildInfo("signatory_build_info", "Build information, under Signatory's name and labels (for its dashboards).", o.Build, false),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.sigil.collectors()...)
	m.reg.MustRegister(m.reload.collectors()...)
	return m
}

// buildInfo is sigil_build_info (extended) or signatory_build_info, whose
// unknown fields read "(unknown)" as Signatory writes them.
func buildInfo(name, help string, b buildinfo.Info, extended bool) prometheus.Collector {
	unknown := "(unknown)"
	if extended {
		unknown = unknownLabel
	}
	v := func(s string) string {
		if s == "" || s == unknownLabel {
			return unknown
		}
		return s
	}
	labels := prometheus.Labels{
		"path": v(b.Path), "version": v(b.Version), "checksum": v(b.Checksum),
		"revision": v(b.Revision), "branch": v(b.Branch),
	}
	if extended {
		labels["build_time"], labels["commit_time"], labels["go_version"] = v(b.BuildTime), v(b.Time), v(b.GoVersion)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	g.Set(1)
	return g
}

// Handler serves the registry in the Prometheus text format. As
// Signatory's promhttp.Handler, it counts its own scrapes
// (promhttp_metric_handler_requests_total by code, and
// promhttp_metric_handler_requests_in_flight).
func (m *Metrics) Handler() http.Handler {
	m.handlerOnce.Do(func() {
		m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	})
	return m.handler
}

// Registry exposes the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetKeys installs the predicate that tells which addresses are keys the
// signer holds; only those become address label values. Until it is set
// every address is "unknown".
func (m *Metrics) SetKeys(held func(address string) bool) { m.held.Store(&held) }

func (m *Metrics) address(a string) string {
	if h := m.held.Load(); h != nil && (*h)(a) {
		return a
	}
	return unknownLabel
}

func (m *Metrics) chain(id string) string {
	if id == "" {
		return ""
	}
	return m.chains.label(id, maxChains)
}

func kind(k string) string {
	if k == "" {
		return unknownLabel
	}
	return k
}

func round(r int32) string {
	if r < 0 || r > maxRound {
		return otherLabel
	}
	return strconv.Itoa(int(r))
}

// boundedSet admits at most n distinct values; later ones map to "other".
type boundedSet struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (b *boundedSet) label(v string, n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= n {
		return otherLabel
	}
	if b.seen == nil {
		b.seen = map[string]struct{}{}
	}
	b.seen[v] = struct{}{}
	return v
}

// Label values Signatory writes.
const (
	// OperationTypeRequest is policy_violation_total's operation_type.
	OperationTypeRequest = "request"
	// ReasonWatermark is watermark_rejection_total's reason: the text of
	// Signatory's watermark refusal.
	ReasonWatermark = "watermark validation failed"
)

// ObserveSign implements ports.SignObserver: as Signatory's
// SignInterceptor, a signed request counts in signing_ops_total (each
// operation kind of a generic request, else its request kind once),
// vault_sign_request_duration_milliseconds and, for a consensus request,
// consensus_round_total; a failed one (a watermark refusal included, code
// 409) in vault_sign_request_error_total with its HTTP status.
func (m *Metrics) ObserveSign(e ports.SignEvent) {
	e.Address, e.ChainID = m.address(e.Address), m.chain(e.ChainID)
	if e.Err != nil {
		m.vaultErrors.WithLabelValues(e.Vault, strconv.Itoa(httpapi.StatusFor(e.Err)), e.ChainID).Inc()
		return
	}
	m.vaultDuration.WithLabelValues(e.Vault, e.Address, e.Request, e.ChainID).Observe(float64(e.Duration) / float64(time.Millisecond))
	m.sigil.enclaveSign.WithLabelValues(e.Vault, e.Address).Observe(e.Duration.Seconds())
	if len(e.Ops) == 0 {
		m.signingOps.WithLabelValues(e.Address, e.Vault, e.Request, e.Request, e.ChainID).Inc()
	}
	for op, n := range e.Ops {
		m.signingOps.WithLabelValues(e.Address, e.Vault, e.Request, op, e.ChainID).Add(float64(n))
	}
	if e.Consensus {
		m.consensusRounds.WithLabelValues(e.Address, e.Request, e.ChainID, round(e.Round)).Inc()
		if e.Address != unknownLabel {
			m.sigil.consensusSigned(e.Address)
		}
	}
}

// ObservePolicy implements ports.SignObserver: policy_violation_total, with
// Signatory's values (violation_type the refused request or operation
// kind, "authentication" or "policy_hook"; operation_type "request").
func (m *Metrics) ObservePolicy(e ports.PolicyEvent) {
	m.policyViolations.WithLabelValues(kind(e.Violation), m.address(e.Address), OperationTypeRequest).Inc()
}

// ObserveWatermark implements ports.SignObserver, for every request that
// reached the signing step (generic and pack included, as Signatory counts
// them): watermark_operations_total (success, or rejected when refused or
// when the store failed), watermark_operation_duration_seconds, and
// watermark_rejection_total for a refusal.
func (m *Metrics) ObserveWatermark(e ports.WatermarkEvent) {
	result := "success"
	switch e.Outcome {
	case ports.WatermarkRejected:
		result = "rejected"
		m.watermarkRejects.WithLabelValues(m.address(e.Address), e.Request, m.chain(e.ChainID), ReasonWatermark).Inc()
	case ports.WatermarkFailed:
		result = "rejected"
	}
	backend := kind(m.backend)
	m.watermarkOps.WithLabelValues(result, backend, e.Request).Inc()
	m.watermarkDuration.WithLabelValues(backend).Observe(e.Duration.Seconds())
}

// ObserveWatermarkIO implements ports.WatermarkIOObserver: the
// watermark_io_* families.
func (m *Metrics) ObserveWatermarkIO(e ports.WatermarkIOEvent) {
	result := "success"
	if e.Err != nil {
		result = "error"
		m.watermarkIOErrors.WithLabelValues(e.Backend, kind(e.ErrorType), e.Table, e.Operation).Inc()
	}
	m.watermarkIOOps.WithLabelValues(e.Backend, e.Operation, e.Table, result).Inc()
	m.watermarkIOTime.WithLabelValues(e.Backend, e.Operation, e.Table).Observe(e.Duration.Seconds())
}

// SignHandled implements httpapi.Observer: sign_handler_requests_total,
// sign_handler_request_duration_milliseconds and
// sigil_sign_request_duration_seconds.
func (m *Metrics) SignHandled(address string, status int, d time.Duration) {
	address = m.address(address)
	s := strconv.Itoa(status)
	m.handlerDuration.WithLabelValues(address, s).Observe(float64(d) / float64(time.Millisecond))
	m.handlerRequests.WithLabelValues(address, s).Inc()
	m.sigil.signLatency.WithLabelValues(address, s).Observe(d.Seconds())
}

// AuthenticationFailed implements httpapi.Observer:
// authentication_failure_total.
func (m *Metrics) AuthenticationFailed(status int, method, clientIP string) {
	if clientIP == "" {
		clientIP = unknownLabel
	}
	m.authFailures.WithLabelValues(strconv.Itoa(status), method, m.clientIPs.label(clientIP, maxClientIPs)).Inc()
}

var (
	_ ports.SignObserver        = (*Metrics)(nil)
	_ ports.WatermarkIOObserver = (*Metrics)(nil)
	_ httpapi.Observer          = (*Metrics)(nil)
)
