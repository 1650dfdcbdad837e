package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a configuration reload (sigil_config_reloads_total's result
// label).
const (
	// ReloadSuccess: the new configuration is in force.
	ReloadSuccess = "success"
	// ReloadRefused: the new configuration is invalid, changes a setting
	// that needs a restart, or drops a key its policies still name; the
	// old one is kept.
	ReloadRefused = "refused"
	// ReloadFailed: the key storage or an enclave failed while the new
	// keys loaded; the old configuration is kept.
	ReloadFailed = "failed"
)

// reloadMetrics are the configuration reload families. Every result's
// series exists from the start, at 0, so that an alert on its increase
// sees the first reload that fails.
type reloadMetrics struct {
	total       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	lastOK      prometheus.Gauge
}

func newReloadMetrics() *reloadMetrics {
	r := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, POST /reload) by result: success, refused (invalid configuration, a setting that needs a restart, a dropped key its policy names), failed (key storage or enclave error).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load: the start, or the last reload that succeeded.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_config_last_reload_successful",
			Help: "1 when the last configuration reload (or the start) succeeded, 0 when it was refused or failed and the previous configuration is still in force.",
		}),
	}
	for _, res := range []string{ReloadSuccess, ReloadRefused, ReloadFailed} {
		r.total.WithLabelValues(res)
	}
	return r
}

func (r *reloadMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.total, r.lastSuccess, r.lastOK}
}

// ConfigLoaded records the configuration loaded at start.
func (m *Metrics) ConfigLoaded(at time.Time) {
	m.reload.lastSuccess.Set(float64(at.UnixNano()) / 1e9)
	m.reload.lastOK.Set(1)
}

// ConfigReloaded records a reload's result (ReloadSuccess, ReloadRefused,
// ReloadFailed) at time at.
func (m *Metrics) ConfigReloaded(result string, at time.Time) {
	m.reload.total.WithLabelValues(result).Inc()
	if result == ReloadSuccess {
		m.ConfigLoaded(at)
		return
	}
	m.reload.lastOK.Set(0)
}
