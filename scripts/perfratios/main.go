// Command perfratios measures the daemon against two floors, on this
// machine, in one run, and prints the ratios that docs/performance.md
// tracks:
//
//   - CPU per signed ed25519 request (utime+stime from /proc/PID/stat over a
//     run, divided by the requests served) of `sigil serve` in front of the
//     mock enclave, and of a Go net/http server that returns a fixed
//     signature (the "null server", the floor any HTTP signer pays), both
//     driven by sigil-load with the same number of clients;
//   - p50 latency at 1 client of the daemon, of the null server, and of a
//     bare enclave round trip (one raw connection, Sign in a loop);
//   - throughput at 32 clients with the enclave's --reply-delay 1ms, with a
//     pool of 32 connections and with one connection.
//
// Every process (daemon, mock enclave, null server, load tool) is separate,
// so that each one's CPU can be read on its own. It only binds and targets
// 127.0.0.1. Usage (scripts/perf-ratios.sh builds the binaries first):
//
//	go run ./scripts/perfratios -bin DIR [-duration 10s] [-clients 32] [-json FILE]
//
// DIR holds sigil, sigil-enclave and sigil-load (of any version: the script
// speaks to them only through their command lines, HTTP and the enclave
// protocol, so the same script measures an older build).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-serve-null" {
		serveNull()
		return
	}
	bin := flag.String("bin", "", "directory holding sigil, sigil-enclave and sigil-load")
	dur := flag.Duration("duration", 10*time.Second, "length of each measured load run")
	clients := flag.Int("clients", 32, "clients of the CPU and pool runs")
	jsonOut := flag.String("json", "", "also write the figures as JSON to this file")
	poolOnly := flag.Bool("pool-only", false, "run only the pool scaling measurement")
	flag.Parse()
	if *bin == "" {
		fail(fmt.Errorf("-bin is required"))
	}
	work, err := os.MkdirTemp("", "perfratios-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	m := &measurer{bin: *bin, work: work, dur: *dur, poolOnly: *poolOnly}
	defer m.stopAll()
	res, err := m.run(*clients)
	if err != nil {
		m.stopAll()
		fail(err)
	}
	res.print(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "perfratios:", err)
	os.Exit(1)
}

// serveNull is the null server: it answers every request with the same
// signature, after reading the body, as a signer would.
func serveNull() {
	sk, _ := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	sig, _ := sk.Sign([]byte{3, 0}, 2)
	body, _ := json.Marshal(map[string]string{"signature": sig.String()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
}

// Result holds every figure of a run.
type Result struct {
	When    string  `json:"when"`
	Load    string  `json:"load_avg_before"`
	Clients int     `json:"clients"`
	DurS    float64 `json:"duration_s"`

	DaemonCPUus   float64 `json:"daemon_cpu_us_per_req"`
	EnclaveCPUus  float64 `json:"enclave_cpu_us_per_req"`
	DaemonOps     float64 `json:"daemon_ops_per_s"`
	NullCPUus     float64 `json:"null_cpu_us_per_req"`
	NullOps       float64 `json:"null_ops_per_s"`
	CPURatio      float64 `json:"cpu_ratio"`
	DaemonP50us   float64 `json:"daemon_p50_us_1client"`
	NullP50us     float64 `json:"null_p50_us_1client"`
	BareP50us     float64 `json:"bare_enclave_p50_us"`
	LatencyExtra  float64 `json:"latency_extra_us"`
	PoolOps       float64 `json:"pool_ops_per_s"`
	OneConnOps    float64 `json:"one_conn_ops_per_s"`
	PoolRatio     float64 `json:"pool_ratio"`
	PoolConns     int     `json:"pool_connections"`
	DaemonErrors  int     `json:"daemon_errors"`
	ReplyDelayRun string  `json:"reply_delay"`
}

func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "perfratios %s, load before %s, %d clients, %v per run\n", r.When, r.Load, r.Clients, time.Duration(r.DurS*float64(time.Second)))
	fmt.Fprintf(w, "CPU per request: daemon %.1f µs (enclave %.1f µs), null server %.1f µs -> ratio %.2f (goal <= 1.5)   [daemon %.0f ops/s, null %.0f ops/s]\n",
		r.DaemonCPUus, r.EnclaveCPUus, r.NullCPUus, r.CPURatio, r.DaemonOps, r.NullOps)
	fmt.Fprintf(w, "p50 at 1 client: daemon %.0f µs, bare enclave %.0f µs, null server %.0f µs -> daemon - bare - null = %+.0f µs (goal <= 50)\n",
		r.DaemonP50us, r.BareP50us, r.NullP50us, r.LatencyExtra)
	fmt.Fprintf(w, "pool, %d clients, reply delay %s: %d connections %.0f ops/s, 1 connection %.0f ops/s -> ratio %.1f (goal >= 10)\n",
		r.Clients, r.ReplyDelayRun, r.PoolConns, r.PoolOps, r.OneConnOps, r.PoolRatio)
	if r.DaemonErrors > 0 {
		fmt.Fprintf(w, "WARNING: %d failed requests against the daemon\n", r.DaemonErrors)
	}
}

type measurer struct {
	bin, work string
	dur       time.Duration
	procs     []*exec.Cmd
	poolOnly  bool
	kmsKey    string
	keyFile   string
	pkh       string
	blob      []byte
}

func (m *measurer) run(clients int) (*Result, error) {
	res := &Result{When: time.Now().UTC().Format(time.RFC3339), Load: loadAvg(), Clients: clients, DurS: m.dur.Seconds(), ReplyDelayRun: "1ms", PoolConns: 32}
	if err := m.makeKey(); err != nil {
		return nil, err
	}
	if m.poolOnly {
		return res, m.pool(res, clients)
	}
	nullCmd, nullAddr, err := m.start("null", []string{"-serve-null"}, os.Args[0])
	if err != nil {
		return nil, err
	}

	// 1. CPU per request at `clients` clients, no reply delay.
	encCmd, encAddr, err := m.startEnclave("cpu", "0s")
	if err != nil {
		return nil, err
	}
	daemonCmd, api, err := m.startDaemon("cpu", encAddr, 4)
	if err != nil {
		return nil, err
	}
	d0, e0 := cpu(daemonCmd), cpu(encCmd)
	lr, err := m.load(api, clients, m.dur)
	if err != nil {
		return nil, err
	}
	n := float64(lr.Requests + lr.WarmupRequests)
	res.DaemonCPUus = float64(cpu(daemonCmd)-d0) / n
	res.EnclaveCPUus = float64(cpu(encCmd)-e0) / n
	res.DaemonOps = lr.OpsPerSec
	res.DaemonErrors += lr.Requests - lr.OK
	n0 := cpu(nullCmd)
	nr, err := m.load("http://"+nullAddr, clients, m.dur)
	if err != nil {
		return nil, err
	}
	res.NullCPUus = float64(cpu(nullCmd)-n0) / float64(nr.Requests+nr.WarmupRequests)
	res.NullOps = nr.OpsPerSec
	res.CPURatio = res.DaemonCPUus / res.NullCPUus

	// 2. Latency at 1 client.
	lr1, err := m.load(api, 1, m.dur)
	if err != nil {
		return nil, err
	}
	res.DaemonErrors += lr1.Requests - lr1.OK
	res.DaemonP50us = lr1.LatencyMS.P50 * 1000
	nr1, err := m.load("http://"+nullAddr, 1, m.dur)
	if err != nil {
		return nil, err
	}
	res.NullP50us = nr1.LatencyMS.P50 * 1000
	bare, err := m.bareRTT(encAddr, m.dur)
	if err != nil {
		return nil, err
	}
	res.BareP50us = float64(bare.Microseconds())
	res.LatencyExtra = res.DaemonP50us - res.BareP50us - res.NullP50us
	m.stop(daemonCmd)
	m.stop(encCmd)

	return res, m.pool(res, clients)
}

// pool measures throughput at `clients` clients with a 1 ms reply delay,
// with a pool of PoolConns connections and with one.
func (m *measurer) pool(res *Result, clients int) error {
	encCmd, encAddr, err := m.startEnclave("pool", "1ms")
	if err != nil {
		return err
	}
	for _, conns := range []int{res.PoolConns, 1} {
		dc, api, err := m.startDaemon(fmt.Sprintf("pool%d", conns), encAddr, conns)
		if err != nil {
			return err
		}
		r, err := m.load(api, clients, m.dur)
		if err != nil {
			return err
		}
		res.DaemonErrors += r.Requests - r.OK
		if conns == 1 {
			res.OneConnOps = r.OpsPerSec
		} else {
			res.PoolOps = r.OpsPerSec
		}
		m.stop(dc)
	}
	res.PoolRatio = res.PoolOps / res.OneConnOps
	m.stop(encCmd)
	return nil
}

// makeKey seals one ed25519 key under a local KMS key file, as the mock
// enclave does, into a Signatory-format key file.
func (m *measurer) makeKey() error {
	m.kmsKey = filepath.Join(m.work, "kms.key")
	kms, err := localstandin.New(m.kmsKey)
	if err != nil {
		return err
	}
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	if err != nil {
		return err
	}
	pk, _ := sk.Public()
	w, err := enclavewire.NewPrivateKey(sk)
	if err != nil {
		return err
	}
	plain, err := enclavewire.MarshalPrivateKey(w)
	if err != nil {
		return err
	}
	if m.blob, err = kms.Seal(plain); err != nil {
		return err
	}
	m.pkh = pk.Hash().String()
	m.keyFile = filepath.Join(m.work, "keys.json")
	b, _ := json.Marshal([]map[string]string{{"public_key_hash": m.pkh, "encrypted_private_key": base64.StdEncoding.EncodeToString(m.blob)}})
	return os.WriteFile(m.keyFile, b, 0o600)
}

func (m *measurer) startEnclave(name, delay string) (*exec.Cmd, string, error) {
	return m.start("enclave-"+name, []string{"--listen", "127.0.0.1:0", "--kms", "local", "--kms-key-file", m.kmsKey,
		"--reply-delay", delay, "--log-level", "warn"}, filepath.Join(m.bin, "sigil-enclave"))
}

func (m *measurer) startDaemon(name, encAddr string, conns int) (*exec.Cmd, string, error) {
	host, port, _ := net.SplitHostPort(encAddr)
	dir := filepath.Join(m.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	cfg := fmt.Sprintf(`base_dir: %s
server: {address: "127.0.0.1:0", utility_address: "127.0.0.1:0"}
vaults:
  cs:
    driver: confidentialspace
    config:
      host: %s
      port: "%s"
      wip_provider_path: perf/wip
      encryption_key_path: perf/kms
      connections: %d
      storage: {driver: file, config: %s}
watermark: {driver: mem}
tezos:
  %s:
    allow:
      generic: [transaction]
`, dir, host, port, conns, m.keyFile, m.pkh)
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(filepath.Join(m.bin, "sigil"), "serve", "-c", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "sigil.log"))
	if err != nil {
		return nil, "", err
	}
	pr, pw := io.Pipe()
	cmd.Stdout = logf
	cmd.Stderr = io.MultiWriter(logf, pw)
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	m.procs = append(m.procs, cmd)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "signer ready") {
				for _, f := range strings.Fields(line) {
					if a, ok := strings.CutPrefix(f, "address="); ok {
						addr <- a
					}
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close() }()
	select {
	case a := <-addr:
		return cmd, "http://" + a, nil
	case <-time.After(30 * time.Second):
		return nil, "", fmt.Errorf("daemon %s not ready in 30 s (log in %s)", name, logf.Name())
	}
}

// start runs a process that prints "listening on ADDR" on stdout.
func (m *measurer) start(name string, args []string, path string) (*exec.Cmd, string, error) {
	cmd := exec.Command(path, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	logf, err := os.Create(filepath.Join(m.work, name+".log"))
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	m.procs = append(m.procs, cmd)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addr <- strings.TrimSpace(a)
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, a, nil
	case <-time.After(10 * time.Second):
		return nil, "", fmt.Errorf("%s did not start", name)
	}
}

func (m *measurer) stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
	}
	m.procs = slices.DeleteFunc(m.procs, func(c *exec.Cmd) bool { return c == cmd })
}

func (m *measurer) stopAll() {
	for len(m.procs) > 0 {
		m.stop(m.procs[0])
	}
}

type loadResult struct {
	Requests       int     `json:"requests"`
	OK             int     `json:"ok"`
	OpsPerSec      float64 `json:"ops_per_s"`
	WarmupRequests int     `json:"warmup_requests"`
	LatencyMS      struct {
		P50 float64 `json:"p50"`
	} `json:"latency_ms"`
}

func (m *measurer) load(url string, clients int, d time.Duration) (*loadResult, error) {
	cmd := exec.Command(filepath.Join(m.bin, "sigil-load"), "--url", url, "--key", m.pkh, "--concurrency", strconv.Itoa(clients),
		"--duration", d.String(), "--warmup", "1s", "--json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("sigil-load %s: %v: %s", url, err, errb.String())
	}
	var r loadResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("sigil-load output: %v", err)
	}
	if r.Requests == 0 {
		return nil, fmt.Errorf("sigil-load %s: no request completed", url)
	}
	return &r, nil
}

// bareRTT is the enclave round trip with no daemon: one connection,
// Initialize, Import, then Sign in a loop for d; it returns the median.
func (m *measurer) bareRTT(addr string, d time.Duration) (time.Duration, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetNoDelay(true)
	call := func(req *enclavewire.Request, out any) error {
		p, err := enclavewire.EncodeRequest(req)
		if err != nil {
			return err
		}
		if err := enclavewire.WriteFrame(nc, p); err != nil {
			return err
		}
		f, err := enclavewire.ReadFrame(nc, enclavewire.DefaultMaxFrame)
		if err != nil {
			return err
		}
		return enclavewire.DecodeReply(f, out)
	}
	if err := call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "perf/wip", EncryptionKeyPath: "perf/kms"}), nil); err != nil {
		return 0, err
	}
	var r enclavewire.ImportResult
	if err := call(enclavewire.NewImport(m.blob), &r); err != nil {
		return 0, err
	}
	msg := make([]byte, 100)
	msg[0] = 3
	var lat []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		t := time.Now()
		var sig enclavewire.Tagged
		if err := call(enclavewire.NewSign(r.Handle, msg, 2), &sig); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], nil
}

// cpu returns utime+stime of the process in clock ticks converted to
// microseconds (USER_HZ is 100 on Linux).
func cpu(cmd *exec.Cmd) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * 10000
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}
