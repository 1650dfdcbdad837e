package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/integration/promcheck"
)

const (
	dashboard = "grafana/dashboards/sigil.json"
	alerts    = "prometheus/alerts.yml"
	alertTest = "prometheus/tests/alerts_test.yml"
)

// dashboardVars are concrete values for the dashboard's variables.
var dashboardVars = map[string]string{"instance": ".*", "address": ".*", "vault": ".*", "__rate_interval": "1m"}

func promtool(t *testing.T) string {
	return harness.Tool(t, "promtool", "Debian: apt-get install prometheus")
}

func run(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPromtoolChecksConfigAndRules(t *testing.T) {
	pt := promtool(t)
	if out, err := run(t, ".", pt, "check", "rules", alerts); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := run(t, "prometheus", pt, "check", "config", "prometheus.yml"); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// TestAlertUnitTests runs the promtool unit tests of every alert, then shows
// that they catch a change: the same tests against rules whose thresholds
// were altered fail.
func TestAlertUnitTests(t *testing.T) {
	pt := promtool(t)
	out, err := run(t, ".", pt, "test", "rules", alertTest)
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules printed no SUCCESS:\n%s", out)
	}

	rules, err := promcheck.AlertRules(alerts)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTest)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if !strings.Contains(string(tests), "alertname: "+r.Source[len("alert "):]) {
			t.Errorf("%s has no promtool unit test in %s", r.Source, alertTest)
		}
	}
	orig, err := os.ReadFile(alerts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ name, from, to string }{
		{"SigilDown compares with 1", `up{job="sigil"} == 0`, `up{job="sigil"} == 1`},
		{"the consensus silence is 30 minutes", `> 900`, `> 1800`},
		{"a metric is renamed", `watermark_io_errors_total`, `watermark_io_error_total`},
		// The first event of a counter born at 1 is seen only through the
		// series born in the window: without that term, the first refusal,
		// the first errors of each key and operation go unseen.
		{"the first refusal is not counted", `(watermark_rejection_total unless watermark_rejection_total offset 5m)`, `(watermark_rejection_total unless watermark_rejection_total)`},
		{"the first server errors are not counted", `(sign_handler_requests_total{status=~"5.."} unless sign_handler_requests_total{status=~"5.."} offset 5m)`, `(sign_handler_requests_total{status=~"5.."} unless sign_handler_requests_total{status=~"5.."})`},
		{"the first store errors are not counted", `(watermark_io_errors_total unless watermark_io_errors_total offset 5m)`, `(watermark_io_errors_total unless watermark_io_errors_total)`},
		{"a daemon's counts from before the first scrape fire", `(max by (instance) (up offset 5m) or`, `(max by (instance) (up) or`},
	} {
		t.Run(m.name, func(t *testing.T) {
			if !strings.Contains(string(orig), m.from) {
				t.Fatalf("%s does not contain %q", alerts, m.from)
			}
			dir := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(dir, "tests"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "alerts.yml"), []byte(strings.Replace(string(orig), m.from, m.to, 1)), 0o644))
			must(t, os.WriteFile(filepath.Join(dir, "tests", "alerts_test.yml"), tests, 0o644))
			if out, err := run(t, dir, pt, "test", "rules", "tests/alerts_test.yml"); err == nil {
				t.Errorf("the unit tests pass against altered rules:\n%s", out)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// exported returns the metric names a daemon can export: its families (a
// histogram as its _bucket, _count and _sum series), Go and process
// collector families by prefix, and Prometheus's own up.
func exported() func(string) bool {
	names := map[string]bool{"up": true}
	add := func(fams map[string][]string) {
		for n := range fams {
			names[n] = true
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				names[n+s] = true
			}
		}
	}
	add(metrics.SignatoryFamilies)
	add(metrics.SigilFamilies)
	for _, n := range []string{"vault_sign_request_duration_milliseconds", "sign_handler_request_duration_milliseconds",
		"watermark_operation_duration_seconds", "watermark_io_latency_seconds"} {
		names[n] = true
	}
	return func(n string) bool {
		return names[n] || strings.HasPrefix(n, "process_") || strings.HasPrefix(n, "go_")
	}
}

// TestDashboardAndAlertsUseExportedMetrics checks, without Prometheus, that
// every metric the dashboard and the alerts select is one the daemon
// exports, that every panel has a query, and that panel ids are unique.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	targets, err := promcheck.DashboardTargets(dashboard, dashboardVars)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := promcheck.AlertRules(alerts)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) < 20 || len(rules) < 8 {
		t.Fatalf("%d panel targets and %d alerts: the files were not read whole", len(targets), len(rules))
	}
	ok := exported()
	used := map[string]bool{}
	for _, e := range append(targets, rules...) {
		if strings.Contains(e.Expr, "$") {
			t.Errorf("%s: unsubstituted variable in %s", e.Source, e.Expr)
		}
		names, err := promcheck.MetricNames(e.Expr)
		if err != nil {
			t.Errorf("%s: %v", e.Source, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s selects no metric: %s", e.Source, e.Expr)
		}
		for _, n := range names {
			used[n] = true
			if !ok(n) {
				t.Errorf("%s uses %s, which the daemon does not export", e.Source, n)
			}
		}
	}
	// The list: what the dashboard must show.
	for _, n := range []string{"signing_ops_total", "sigil_sign_request_duration_seconds_bucket", "vault_sign_request_error_total",
		"policy_violation_total", "watermark_rejection_total", "consensus_round_total", "sigil_enclave_connections",
		"sigil_enclave_redials_total", "sigil_enclave_keys_loaded", "watermark_io_latency_seconds_bucket", "sigil_build_info"} {
		if !used[n] {
			t.Errorf("neither the dashboard nor the alerts use %s", n)
		}
	}

	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int               `json:"id"`
			Type    string            `json:"type"`
			Title   string            `json:"title"`
			Targets []json.RawMessage `json:"targets"`
			GridPos struct{ H, W, X, Y int }
		} `json:"panels"`
	}
	must(t, json.Unmarshal(data, &d))
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q does not fit the 24-column grid: %+v", p.Title, p.GridPos)
		}
	}
}

// TestCompose parses the compose file: its services, the files it mounts,
// the configuration it gives the daemon, and the sandbox key it imports.
func TestCompose(t *testing.T) {
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image      string   `yaml:"image"`
			Command    []string `yaml:"command"`
			Entrypoint []string `yaml:"entrypoint"`
			Volumes    []string `yaml:"volumes"`
			Ports      []string `yaml:"ports"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	must(t, yaml.Unmarshal(data, &c))
	var names []string
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "enclave,grafana,import-key,prometheus,sigil" {
		t.Errorf("services %v", names)
	}
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("service %s mounts the undeclared volume %s", name, src)
			}
		}
	}
	if got := c.Services["sigil"].Ports; strings.Join(got, " ") != "127.0.0.1:6732:6732 127.0.0.1:9583:9583" {
		t.Errorf("sigil publishes %v", got)
	}
	// The daemon's configuration loads, and names the key imported.
	cfg, err := config.Load("compose/sigil.yaml", false, "")
	if err != nil {
		t.Fatalf("compose/sigil.yaml: %v", err)
	}
	if cfg.Vaults["cs"].Driver != "confidentialspace" || cfg.Server.UtilityAddress != ":9583" {
		t.Errorf("compose/sigil.yaml: vault %+v, utility %q", cfg.Vaults["cs"], cfg.Server.UtilityAddress)
	}
	sk, err := os.ReadFile("compose/bootstrap1.key")
	must(t, err)
	key, err := tezos.ParsePrivateKey(strings.TrimSpace(string(sk)))
	must(t, err)
	pk, err := key.Public()
	must(t, err)
	if _, ok := cfg.Tezos[pk.Hash().String()]; !ok {
		t.Errorf("compose/sigil.yaml has no policy for the imported key %s", pk.Hash())
	}
	// Prometheus's scrape target is the sigil service's utility port.
	prom, err := os.ReadFile("prometheus/prometheus.yml")
	must(t, err)
	if !regexp.MustCompile(`targets: \["sigil:9583"\]`).Match(prom) || !strings.Contains(string(prom), "job_name: sigil") {
		t.Errorf("prometheus/prometheus.yml does not scrape sigil:9583 as job sigil:\n%s", prom)
	}
}

// TestSystemdUnit verifies the unit with systemd-analyze (with ExecStart
// pointing at a real binary, which verify requires) and checks its
// hardening directives.
func TestSystemdUnit(t *testing.T) {
	sa := harness.Tool(t, "systemd-analyze", "Debian: apt-get install systemd")
	unit, err := os.ReadFile("systemd/sigil.service")
	must(t, err)
	for _, d := range []string{"ProtectSystem=strict", "ReadWritePaths=/var/lib/sigil", "NoNewPrivileges=yes", "PrivateTmp=yes",
		"CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_VSOCK",
		"DynamicUser=yes", "StateDirectory=sigil", "LoadCredential=sigil.yaml:/etc/sigil/sigil.yaml", "KillSignal=SIGTERM",
		"ExecStartPre=/usr/local/bin/sigil config check ", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), d) {
			t.Errorf("the unit lacks %q", d)
		}
	}
	bin, err := exec.LookPath("true")
	must(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "sigil.service")
	must(t, os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sigil", bin)), 0o644))
	if out, err := run(t, dir, sa, "verify", path); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The unit and the docs agree on the state directory: --base-dir is
	// the StateDirectory and the one writable path, and the operations,
	// configuration and migration docs say so.
	base := regexp.MustCompile(`(?m)^ExecStart=.* --base-dir (\S+)`).FindStringSubmatch(string(unit))
	if base == nil {
		t.Fatal("ExecStart passes no --base-dir")
	}
	state := regexp.MustCompile(`(?m)^StateDirectory=(\S+)$`).FindStringSubmatch(string(unit))
	if state == nil || "/var/lib/"+state[1] != base[1] || !strings.Contains(string(unit), "ReadWritePaths="+base[1]+"\n") {
		t.Errorf("--base-dir %s, StateDirectory %v and ReadWritePaths disagree", base[1], state)
	}
	for doc, wants := range map[string][]string{
		"../docs/operations.md":               {"--base-dir " + base[1], "watermark_location=" + base[1] + "/watermark_v2"},
		"../docs/configuration.md":            {"--base-dir " + base[1], "base_dir=" + base[1] + " base_dir_from=--base-dir"},
		"../docs/migrating-from-signatory.md": {"--base-dir\n   " + base[1], "cp -a /var/lib/signatory " + base[1]},
	} {
		text, err := os.ReadFile(doc)
		must(t, err)
		for _, w := range wants {
			if !strings.Contains(string(text), w) {
				t.Errorf("%s does not say %q (the unit's state directory)", doc, w)
			}
		}
	}
	// A typo in a directive is caught: the check can fail.
	bad := filepath.Join(dir, "bad", "sigil.service")
	must(t, os.MkdirAll(filepath.Dir(bad), 0o755))
	must(t, os.WriteFile(bad, []byte(strings.ReplaceAll(strings.ReplaceAll(string(unit), "/usr/local/bin/sigil", bin), "ProtectSystem=", "ProtectSystme=")), 0o644))
	if out, _ := run(t, dir, sa, "verify", bad); !strings.Contains(out, "ProtectSystme") {
		t.Errorf("systemd-analyze verify did not report an unknown directive:\n%s", out)
	}
}

// unitLine returns the value of the unit's directive name (its only line).
func unitLine(t *testing.T, unit, name string) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			out = append(out, v)
		}
	}
	if len(out) != 1 {
		t.Fatalf("the unit has %d %s lines", len(out), name)
	}
	return out[0]
}

// TestSystemdConfigCheck runs the unit's ExecStartPre as systemd would
// (the credential directory holding the configuration): `sigil config
// check` with the daemon's own --config and --base-dir passes a good
// configuration and fails a bad one, naming the problem.
func TestSystemdConfigCheck(t *testing.T) {
	raw, err := os.ReadFile("systemd/sigil.service")
	must(t, err)
	unit := string(raw)
	pre, start := unitLine(t, unit, "ExecStartPre"), unitLine(t, unit, "ExecStart")
	preArgs, ok := strings.CutPrefix(pre, "/usr/local/bin/sigil config check ")
	if !ok {
		t.Fatalf("ExecStartPre is not sigil config check: %s", pre)
	}
	if want := strings.TrimPrefix(start, "/usr/local/bin/sigil serve "); preArgs != want {
		t.Errorf("ExecStartPre checks %q, ExecStart serves %q", preArgs, want)
	}
	bin := harness.BuildBinary(t, "./cmd/sigil")
	cred := t.TempDir()
	args := strings.Fields(strings.ReplaceAll(preArgs, "${CREDENTIALS_DIRECTORY}", cred))
	check := func(cfg string) (string, error) {
		must(t, os.WriteFile(filepath.Join(cred, "sigil.yaml"), []byte(cfg), 0o600))
		return run(t, ".", bin, append([]string{"config", "check"}, args...)...)
	}
	good := "vaults:\n  cs:\n    driver: confidentialspace\n    config:\n      host: 10.0.0.100\n      wip_provider_path: projects/1/wip\n      encryption_key_path: projects/1/key\ntezos:\n  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:\n"
	out, err := check(good)
	if err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Errorf("ExecStartPre on a good configuration: %v\n%s", err, out)
	}
	out, err = check(strings.Replace(good, "host:", "hots:", 1))
	if err == nil || !strings.Contains(out, "hots") {
		t.Errorf("ExecStartPre on a misspelt field: %v\n%s", err, out)
	}
}

// bornAtZero are the counters the daemon exports from its start, at 0
// (Sigil's own, created with their labels): increase() sees their first
// event.
var bornAtZero = map[string]bool{"sigil_enclave_redials_total": true, "sigil_config_reloads_total": true, "sigil_enclave_bad_signatures_total": true}

var counterFnRE = regexp.MustCompile(`\b(?:increase|rate)\(\s*([a-z_:][a-z0-9_:]*_total)\b`)

// TestAlertsSeeFirstEvents: every alert over a counter that appears only
// when it first counts (at 1, as Signatory's do) also counts the series
// born in its window (x unless x offset …), without which increase() and
// rate() miss the first event of each series: the first refusal of a key,
// the first error of an operation.
func TestAlertsSeeFirstEvents(t *testing.T) {
	rules, err := promcheck.AlertRules(alerts)
	must(t, err)
	checked := 0
	for _, r := range rules {
		for _, m := range counterFnRE.FindAllStringSubmatch(r.Expr, -1) {
			name := m[1]
			if bornAtZero[name] {
				continue
			}
			checked++
			born := regexp.MustCompile(regexp.QuoteMeta(name) + `(\{[^}]*\})?\s+unless\s+` + regexp.QuoteMeta(name) + `(\{[^}]*\})?\s+offset\s+5m`)
			if !born.MatchString(r.Expr) {
				t.Errorf("%s: %s over %s misses the first event of each series (add (%s unless %s offset 5m) and … or …)", r.Source, m[0], name, name, name)
			}
		}
	}
	if checked < 3 {
		t.Errorf("only %d counters checked: the rules were not read", checked)
	}
}

// TestDashboardGeneratorInSync: the committed dashboard is what
// scripts/gen-dashboard.py writes.
func TestDashboardGeneratorInSync(t *testing.T) {
	py := harness.Tool(t, "python3", "Debian: apt-get install python3")
	out := filepath.Join(t.TempDir(), "sigil.json")
	if got, err := run(t, "..", py, "scripts/gen-dashboard.py", out); err != nil {
		t.Fatalf("gen-dashboard.py: %v\n%s", err, got)
	}
	want, err := os.ReadFile(dashboard)
	must(t, err)
	got, err := os.ReadFile(out)
	must(t, err)
	if string(got) != string(want) {
		t.Errorf("%s differs from what scripts/gen-dashboard.py writes: run python3 scripts/gen-dashboard.py", dashboard)
	}
}

// TestStatPanelsHaveThresholds: every stat panel colours its value by
// thresholds (a number with no colour says nothing at a glance).
func TestStatPanelsHaveThresholds(t *testing.T) {
	data, err := os.ReadFile(dashboard)
	must(t, err)
	var d struct {
		Panels []struct {
			Type, Title string
			FieldConfig struct {
				Defaults struct {
					Thresholds struct {
						Mode  string
						Steps []struct {
							Color string
							Value *float64
						}
					}
				}
			} `json:"fieldConfig"`
		} `json:"panels"`
	}
	must(t, json.Unmarshal(data, &d))
	n := 0
	for _, p := range d.Panels {
		if p.Type != "stat" {
			continue
		}
		n++
		th := p.FieldConfig.Defaults.Thresholds
		if th.Mode != "absolute" || len(th.Steps) == 0 || th.Steps[0].Value != nil {
			t.Errorf("stat panel %q: thresholds %+v (want absolute steps from -inf)", p.Title, th)
		}
	}
	if n < 2 {
		t.Errorf("%d stat panels: the dashboard was not read", n)
	}
}
