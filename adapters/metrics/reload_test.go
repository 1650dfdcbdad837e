package metrics_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sigil-signer/sigil/adapters/metrics"
)

// TestReloadFamilies: every result's series exists at 0 before any reload
// (an alert on its increase sees the first one); the gauges follow the
// start and each reload.
func TestReloadFamilies(t *testing.T) {
	m := metrics.New(metrics.Options{})
	out := scrape(t, m)
	for _, r := range []string{"success", "refused", "failed"} {
		assert.Equal(t, 0.0, sampleValue(t, out, `sigil_config_reloads_total{result="`+r+`"}`))
	}
	start := time.Unix(1_800_000_000, 0)
	m.ConfigLoaded(start)
	out = scrape(t, m)
	assert.Equal(t, 1.8e9, sampleValue(t, out, "sigil_config_last_reload_success_timestamp_seconds"))
	assert.Equal(t, 1.0, sampleValue(t, out, "sigil_config_last_reload_successful"))

	m.ConfigReloaded(metrics.ReloadRefused, start.Add(time.Minute))
	out = scrape(t, m)
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_config_reloads_total{result="refused"}`))
	assert.Equal(t, 0.0, sampleValue(t, out, "sigil_config_last_reload_successful"))
	assert.Equal(t, 1.8e9, sampleValue(t, out, "sigil_config_last_reload_success_timestamp_seconds"), "a refusal is no success")

	m.ConfigReloaded(metrics.ReloadSuccess, start.Add(2*time.Minute))
	out = scrape(t, m)
	assert.Equal(t, 1.0, sampleValue(t, out, `sigil_config_reloads_total{result="success"}`))
	assert.Equal(t, 1.0, sampleValue(t, out, "sigil_config_last_reload_successful"))
	assert.Equal(t, 1.8e9+120, sampleValue(t, out, "sigil_config_last_reload_success_timestamp_seconds"))
}
