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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/ports"
)

// Metrics holds the collectors and their registry.
type Metrics struct {
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

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveSign implements ports.SignObserver.
func (m *Metrics) ObserveSign(e ports.SignEvent) {
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
