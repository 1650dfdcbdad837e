// Package deploy holds no code: it is the home of Sigil's deployment files
// (container images, the Grafana dashboard, the Prometheus alert rules and
// their unit tests, a compose file for a local look, the systemd unit) and
// of the tests that check them statically (promtool, systemd-analyze,
// parsing). integration/prometheus checks the dashboard and the alerts
// against a real Prometheus scraping a real daemon.
package deploy
