// Package prometheus proves Sigil's Grafana dashboard and alert rules
// (deploy/) against a real Prometheus (Debian's package, which .ci/run
// installs) scraping a real daemon under load: the daemon (with the mock
// enclave and a DynamoDB watermark store on dynalite) serves generic and
// consensus requests, refusals and policy violations, and lives through an
// enclave outage, an enclave that comes back unable to open the keys, and a
// watermark store outage; then every dashboard panel's
// expression and every alert rule's expression is evaluated through
// Prometheus's HTTP API, and each must return data with every metric
// selector in it matching series. A deliberate rename of a panel's metric
// shows that the check fails when it should.
package prometheus

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/integration/promcheck"
)

func TestMain(m *testing.M) { harness.Main(m) }

// dashboardVars are the values the dashboard's variables take (All).
var dashboardVars = map[string]string{"instance": ".*", "address": ".*", "vault": ".*", "__rate_interval": "30s"}

// startEnclave starts the mock enclave on port with the local KMS keyed by
// kmsPath.
func startEnclave(t *testing.T, bin string, port int, kmsPath string) *harness.Enclave {
	t.Helper()
	return harness.StartEnclave(t, harness.EnclaveOptions{Binary: bin, Port: port, KMSKeyFile: kmsPath})
}

var readyRE = regexp.MustCompile(`msg="signer ready" address=(\S+) utility_address=(\S+)`)

// client sends sign requests and counts answers by status.
type client struct {
	api  string
	http *http.Client
	mu   sync.Mutex
	bySt map[int]int
}

func (c *client) sign(pkh string, msg []byte) int {
	resp, err := c.http.Post(c.api+"/keys/"+pkh, "application/json", strings.NewReader(strconv.Quote(hex.EncodeToString(msg))))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.mu.Lock()
	c.bySt[resp.StatusCode]++
	c.mu.Unlock()
	return resp.StatusCode
}

func (c *client) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySt[status]
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func TestDashboardAndAlertsAgainstPrometheus(t *testing.T) {
	harness.SkipIfShort(t)
	promBin := harness.Tool(t, "prometheus", "Debian: apt-get install prometheus")
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	dl := harness.StartPrivateDynalite(t)
	dir := t.TempDir()

	// Two keys: A may sign transactions and consensus requests, B only
	// attestations.
	kmsPath, keysPath := filepath.Join(dir, "kms.key"), filepath.Join(dir, "keys.json")
	kms, err := localstandin.New(kmsPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := file.New(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	keyA, keyB := harness.SealKey(t, kms, st, tezos.Ed25519).Hash().String(), harness.SealKey(t, kms, st, tezos.Secp256k1).Hash().String()

	enclavePort := harness.FreePort(t)
	enc := startEnclave(t, enclaveBin, enclavePort, kmsPath)
	cfgPath := filepath.Join(dir, "sigil.yaml")
	cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: "%d"
      wip_provider_path: prom/wip
      encryption_key_path: prom/kms
      connections: 2
      dial_timeout: 1s
      rpc_timeout: 2s
      storage:
        driver: file
        config: %s
watermark:
  driver: aws
  config:
    table: %s
    region: %s
tezos:
  %s:
    allow:
      block:
      preattestation:
      attestation:
      generic: [transaction]
  %s:
    allow:
      attestation:
`, dir, enclavePort, keysPath, dl.NewTable(t), harness.DynaliteRegion, keyA, keyB)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var api, utility string
	harness.StartProcess(t, harness.ProcessOptions{
		Name:   "sigil",
		Binary: sigil,
		Args:   []string{"serve", "-c", cfgPath},
		Env:    dl.Env(),
		Ready: func(line string) bool {
			m := readyRE.FindStringSubmatch(line)
			if m != nil {
				mu.Lock()
				api, utility = "http://"+m[1], m[2]
				mu.Unlock()
			}
			return m != nil
		},
		Timeout:   60 * time.Second,
		StopGrace: 5 * time.Second,
	})
	mu.Lock()
	apiURL, utilityAddr := api, utility
	mu.Unlock()

	// Prometheus scrapes the daemon every second and evaluates the alert
	// rules every second.
	promPort := harness.FreePort(t)
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: sigil
    static_configs:
      - targets: ["%s"]
`, filepath.Join(root, "deploy/prometheus/alerts.yml"), utilityAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	harness.StartProcess(t, harness.ProcessOptions{
		Name:   "prometheus",
		Binary: promBin,
		Args: []string{"--config.file=" + promCfg, "--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn"},
		Probe: func() bool {
			code, _ := get(t, promURL+"/-/ready")
			return code == http.StatusOK
		},
		Timeout:   60 * time.Second,
		StopGrace: 5 * time.Second,
	})
	prom := &promcheck.Client{URL: promURL}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Background traffic until the checks end: transactions and
	// attestations from A, attestations from B (fresh levels), and now and
	// then a refused one (an older level) and a policy violation (B asked
	// for a transaction).
	c := &client{api: apiURL, http: &http.Client{Timeout: 10 * time.Second}, bySt: map[int]int{}}
	chain := []byte{0x7a, 0x06, 0xa7, 0x70}
	tx, err := hex.DecodeString(loadgen.GenericTransactionHex)
	if err != nil {
		t.Fatal(err)
	}
	var level atomic.Int32
	level.Store(100)
	var faults atomic.Bool // refusals join the traffic once the healthy signer is checked
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; trafficCtx.Err() == nil; i++ {
			l := level.Add(1)
			c.sign(keyA, tx)
			c.sign(keyA, loadgen.Attestation(chain, 1, l, 0))
			c.sign(keyB, loadgen.Attestation(chain, 2, l, 0))
			if i%5 == 0 && faults.Load() {
				c.sign(keyA, loadgen.Attestation(chain, 3, l-3, 0)) // below the mark: 409
				c.sign(keyB, tx)                                    // not allowed: 403
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { stopTraffic(); wg.Wait() }()

	// The real load tool, with every signature verified.
	res, err := loadgen.Run(ctx, loadgen.Options{URL: apiURL, Key: keyA, Concurrency: 4, Duration: 3 * time.Second, Verify: true})
	if err != nil {
		t.Fatalf("sigil-load: %v", err)
	}
	if res.OK == 0 || res.WrongSignatures != 0 || res.Errors() != 0 {
		t.Fatalf("load run: %s", res)
	}
	t.Logf("load: %d signatures in %v, p99 %v", res.OK, res.Duration.Round(time.Millisecond), res.Latency.P99)

	healthy := func() bool {
		code, _ := get(t, "http://"+utilityAddr+"/healthz")
		return code == http.StatusOK
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	dashPath := filepath.Join(root, "deploy/grafana/dashboards/sigil.json")
	panels, err := promcheck.DashboardTargets(dashPath, dashboardVars)
	if err != nil {
		t.Fatal(err)
	}
	// A healthy signer (only signatures so far): every panel shows a
	// value, the error ratio and the refusals 0 rather than NO DATA, and
	// no alert fires.
	waitFor("Prometheus to see the healthy traffic", func() bool {
		r, err := prom.Query(ctx, `sum(rate(signing_ops_total[30s])) > 0 and on() sum(rate(consensus_round_total[30s])) > 0`)
		return err == nil && len(r) == 1
	})
	for _, p := range prom.NoData(ctx, panels) {
		t.Errorf("healthy signer: %s", p)
	}
	for _, title := range []string{"Server error ratio", "Watermark refusals"} {
		for _, p := range panels {
			if !strings.Contains(p.Source, fmt.Sprintf("%q", title)) {
				continue
			}
			r, err := prom.Query(ctx, p.Expr)
			if err != nil || len(r) != 1 || r[0].Value[1] != "0" {
				t.Errorf("healthy signer: %s shows %v (%v), want 0", title, r, err)
			}
		}
	}
	if firing := alertsFiring(t, promURL); len(firing) != 0 {
		t.Errorf("healthy signer: alerts firing: %v", firing)
	}
	// The test of the test: the error ratio as it was written before (no
	// fallback to 0) is NO DATA on this healthy signer.
	if p := prom.NoData(ctx, []promcheck.Expr{{Source: "old error ratio",
		Expr: `sum(rate(sign_handler_requests_total{status=~"5.."}[30s])) / sum(rate(sign_handler_requests_total[30s]))`}}); len(p) != 1 {
		t.Errorf("the healthy check does not see a NO DATA panel: %v", p)
	}

	// The first refusal of a key fires SigilWatermarkRefusals: its
	// counter appears at 1.
	if st := c.sign(keyA, loadgen.Attestation(chain, 1, 1, 0)); st != http.StatusConflict {
		t.Fatalf("a request below the mark: %d, want 409", st)
	}
	waitFor("the first refusal to fire SigilWatermarkRefusals", func() bool { return alertsFiring(t, promURL)["SigilWatermarkRefusals"] })
	faults.Store(true)
	// An enclave outage: 503s, connections down, redials.
	enc.Stop()
	waitFor("the daemon to notice the enclave outage", func() bool { return !healthy() })
	waitFor("503 answers during the enclave outage", func() bool { return c.count(http.StatusServiceUnavailable) >= 5 })
	time.Sleep(2 * time.Second) // a scrape or two with the pool down
	// It comes back initialized with another KMS key: it cannot open the
	// stored keys (error replies to Import, unopened keys).
	enc = startEnclave(t, enclaveBin, enclavePort, filepath.Join(dir, "other-kms.key"))
	waitFor("the daemon to report keys the enclave cannot open", func() bool {
		_, body := get(t, "http://"+utilityAddr+"/healthz")
		return strings.Contains(body, "cannot open the stored key")
	})
	time.Sleep(2 * time.Second)
	enc.Stop()
	enc = startEnclave(t, enclaveBin, enclavePort, kmsPath)
	waitFor("the daemon to recover from the enclave outage", healthy)

	// A watermark store outage: consensus requests fail with 503 and
	// watermark I/O errors.
	n503 := c.count(http.StatusServiceUnavailable)
	dl.Stop()
	waitFor("503 answers during the watermark store outage", func() bool { return c.count(http.StatusServiceUnavailable) >= n503+5 })
	if err := dl.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor("the daemon to recover from the watermark store outage", healthy)

	// Let Prometheus see the recovered state under traffic.
	n200 := c.count(http.StatusOK)
	waitFor("signatures after both outages", func() bool { return c.count(http.StatusOK) >= n200+50 })
	waitFor("Prometheus to scrape the recovered pool", func() bool {
		r, err := prom.Query(ctx, `sigil_enclave_connections{state="up"} == 2 and on() sum(increase(watermark_io_errors_total[5m])) > 0`)
		return err == nil && len(r) == 1
	})
	time.Sleep(3 * time.Second)
	t.Logf("answers by status: %v", c.byStatus())
	for _, s := range []int{http.StatusOK, http.StatusForbidden, http.StatusConflict, http.StatusServiceUnavailable} {
		if c.count(s) == 0 {
			t.Fatalf("the traffic produced no %d answer: %v", s, c.byStatus())
		}
	}

	// Every panel and every alert returns data; every selector matches.
	alerts, err := promcheck.AlertRules(filepath.Join(root, "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(panels) < 20 || len(alerts) < 8 {
		t.Fatalf("%d panel targets, %d alerts: the files were not read whole", len(panels), len(alerts))
	}
	for _, p := range prom.Check(ctx, append(panels, alerts...)) {
		t.Errorf("%s", p)
	}
	t.Logf("checked %d panel targets and %d alert expressions against Prometheus", len(panels), len(alerts))

	// The alert that has no hold time fires: the refusals were seen.
	firing := alertsFiring(t, promURL)
	if !firing["SigilWatermarkRefusals"] {
		t.Errorf("SigilWatermarkRefusals is not firing after refusals; firing: %v", firing)
	}

	// The test of the test: the same check on a dashboard whose panel
	// queries a renamed metric reports that panel (a blank panel).
	data, err := os.ReadFile(dashPath)
	if err != nil {
		t.Fatal(err)
	}
	const from, to = "consensus_round_total", "consensus_rounds_total"
	if !strings.Contains(string(data), from) {
		t.Fatalf("the dashboard does not use %s", from)
	}
	renamed := filepath.Join(dir, "renamed.json")
	if err := os.WriteFile(renamed, []byte(strings.ReplaceAll(string(data), from, to)), 0o644); err != nil {
		t.Fatal(err)
	}
	bad, err := promcheck.DashboardTargets(renamed, dashboardVars)
	if err != nil {
		t.Fatal(err)
	}
	problems := prom.Check(ctx, bad)
	if len(problems) == 0 {
		t.Fatalf("renaming %s to %s in the dashboard went unnoticed", from, to)
	}
	for _, p := range problems {
		if !strings.Contains(p.Expr, to) || !strings.Contains(p.Source, "Consensus signatures by round") {
			t.Errorf("unexpected problem with the renamed metric: %s", p)
		}
	}
	t.Logf("with %s renamed, the check reports:\n%v", from, problems)
	// And a label value misspelled in an alert is caught by its selector.
	problems = prom.Check(ctx, []promcheck.Expr{{Source: "alert renamed", Alert: true,
		Expr: strings.Replace(`sigil_enclave_connections{state="up"} == 0`, `"up"`, `"upp"`, 1)}})
	if len(problems) == 0 {
		t.Errorf("a misspelled label value in an alert went unnoticed")
	}
}

func (c *client) byStatus() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]int{}
	for k, v := range c.bySt {
		out[k] = v
	}
	return out
}

// alertsFiring returns the names of the alerts Prometheus reports firing.
func alertsFiring(t *testing.T, promURL string) map[string]bool {
	t.Helper()
	code, body := get(t, promURL+"/api/v1/alerts")
	if code != http.StatusOK {
		t.Fatalf("/api/v1/alerts: %d %s", code, body)
	}
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, a := range r.Data.Alerts {
		if a.State == "firing" {
			out[a.Labels["alertname"]] = true
		}
	}
	return out
}
