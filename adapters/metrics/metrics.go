// Package metrics is Sigil's Prometheus adapter. It exports the metric names
// and labels Signatory does (signing_ops_total,
// vault_sign_request_duration_milliseconds, vault_sign_request_error_total,
// sign_handler_request_duration_milliseconds, sign_handler_requests_total),
// so existing dashboards and alerts keep working, fed by the domain's sign
// events and the HTTP adapter's handler events.
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

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/ports"
)

// Label values come only from bounded sets, so that no client can grow the
// number of series: an address label only names a key the signer holds
// (anything else is "unknown"), a chain id label is one of the first
// maxChains seen (then "other"), and the other labels come from fixed sets.
const (
	unknownLabel = "unknown"
	otherLabel   = "other"
	maxChains    = 16
)

// Metrics holds the collectors and their registry.
type Metrics struct {
	held   atomic.Pointer[func(string) bool]
	chains boundedSet

	reg             *prometheus.Registry
	signingOps      *prometheus.CounterVec
	vaultDuration   *prometheus.HistogramVec
	vaultErrors     *prometheus.CounterVec
	handlerDuration *prometheus.HistogramVec
	handlerRequests *prometheus.CounterVec
}

// New creates and registers the collectors on a fresh registry (with the
// Go and process collectors).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
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
		}, []string{"result", "address", "request_type"}),
	}
	m.reg.MustRegister(m.signingOps, m.vaultDuration, m.vaultErrors, m.handlerDuration, m.handlerRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

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

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveSign implements ports.SignObserver.
func (m *Metrics) ObserveSign(e ports.SignEvent) {
	e.Address, e.ChainID = m.address(e.Address), m.chain(e.ChainID)
	if e.Err != nil {
		m.vaultErrors.WithLabelValues(e.Vault, strconv.Itoa(httpapi.StatusFor(e.Err)), e.ChainID).Inc()
		return
	}
	m.vaultDuration.WithLabelValues(e.Vault, e.Address, e.Request, e.ChainID).Observe(float64(e.Duration) / float64(time.Millisecond))
	if len(e.Ops) == 0 {
		m.signingOps.WithLabelValues(e.Address, e.Vault, e.Request, e.Request, e.ChainID).Inc()
		return
	}
	for op, n := range e.Ops {
		m.signingOps.WithLabelValues(e.Address, e.Vault, e.Request, op, e.ChainID).Add(float64(n))
	}
}

// SignHandled implements httpapi.Observer.
func (m *Metrics) SignHandled(address string, status int, requestType string, d time.Duration) {
	address = m.address(address)
	s := strconv.Itoa(status)
	m.handlerDuration.WithLabelValues(address, s).Observe(float64(d) / float64(time.Millisecond))
	result := "success"
	if status >= 400 {
		result = "failure"
	}
	m.handlerRequests.WithLabelValues(result, address, requestType).Inc()
}

var (
	_ ports.SignObserver = (*Metrics)(nil)
	_ httpapi.Observer   = (*Metrics)(nil)
)
