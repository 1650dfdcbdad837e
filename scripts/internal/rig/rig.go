// Package rig starts the processes that the measurement scripts under
// scripts/ drive — sigil-enclave with the local KMS stand-in and `sigil
// serve` with a confidentialspace vault on it — and reads what they count:
// the enclave's counters (its "enclave stats" log line, on SIGUSR1), the
// daemon's /metrics, and each process's CPU time. Everything binds and
// targets 127.0.0.1 only.
package rig

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Key is a stored key.
type Key struct {
	PKH string
	PK  tezos.PublicKey
}

// Proc is a running process whose combined output goes to a log file (and
// is kept in memory for scanning).
type Proc struct {
	Cmd  *exec.Cmd
	Name string
	Log  string // path of the log file

	exited chan struct{} // closed once the one Wait returned

	mu  sync.Mutex
	out bytes.Buffer
}

func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns everything the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop sends SIGINT and waits (5 s, then SIGKILL).
func (p *Proc) Stop() {
	if p == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// CPU returns the process's user+system time.
func (p *Proc) CPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// Rig is a work directory and the binaries of one build.
type Rig struct {
	Bin, Dir string
	KMSKey   string // local KMS key file
	KeyFile  string // Signatory-format key file
	Keys     []Key
	// Env is added to the environment of every process started after it
	// is set (NAME=value).
	Env   []string
	procs []*Proc
}

// New makes a rig over the binaries in bin (sigil, sigil-enclave), working
// in a new temporary directory.
func New(bin string) (*Rig, error) {
	dir, err := os.MkdirTemp("", "sigil-rig-")
	if err != nil {
		return nil, err
	}
	return &Rig{Bin: bin, Dir: dir, KMSKey: filepath.Join(dir, "kms.key"), KeyFile: filepath.Join(dir, "keys.json")}, nil
}

// Close stops every process and removes the work directory unless keep.
func (r *Rig) Close(keep bool) {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].Stop()
	}
	if !keep {
		os.RemoveAll(r.Dir)
	}
}

// MakeKeys seals n keys, cycling through types, under the local KMS key
// file, into the key file.
func (r *Rig) MakeKeys(n int, types ...tezos.KeyType) error {
	kms, err := localstandin.New(r.KMSKey)
	if err != nil {
		return err
	}
	type entry struct {
		PKH  string `json:"public_key_hash"`
		Blob string `json:"encrypted_private_key"`
	}
	var entries []entry
	for i := range n {
		sk, err := tezos.GeneratePrivateKey(types[i%len(types)], nil)
		if err != nil {
			return err
		}
		pk, _ := sk.Public()
		w, err := enclavewire.NewPrivateKey(sk)
		if err != nil {
			return err
		}
		plain, err := enclavewire.MarshalPrivateKey(w)
		w.Zero()
		sk.Zero()
		if err != nil {
			return err
		}
		blob, err := kms.Seal(plain)
		clear(plain)
		if err != nil {
			return err
		}
		r.Keys = append(r.Keys, Key{PKH: pk.Hash().String(), PK: pk})
		entries = append(entries, entry{pk.Hash().String(), base64.StdEncoding.EncodeToString(blob)})
	}
	b, _ := json.Marshal(entries)
	return os.WriteFile(r.KeyFile, b, 0o600)
}

func (r *Rig) start(name, path string, args []string, ready *regexp.Regexp, timeout time.Duration) (*Proc, []string, error) {
	logPath := filepath.Join(r.Dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	p := &Proc{Name: name, Log: logPath, Cmd: exec.Command(path, args...), exited: make(chan struct{})}
	if len(r.Env) > 0 {
		p.Cmd.Env = append(os.Environ(), r.Env...)
	}
	pr, pw := io.Pipe()
	w := io.MultiWriter(logf, p, pw)
	p.Cmd.Stdout, p.Cmd.Stderr = w, w
	if err := p.Cmd.Start(); err != nil {
		return nil, nil, err
	}
	r.procs = append(r.procs, p)
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m
				sent = true
			}
		}
	}()
	// The one Wait of this process (two concurrent Waits can block
	// forever); Stop and Kill wait for it.
	go func() { _ = p.Cmd.Wait(); pw.Close(); logf.Close(); close(p.exited) }()
	select {
	case m := <-found:
		return p, m, nil
	case <-time.After(timeout):
		return nil, nil, fmt.Errorf("%s not ready in %v (log in %s)", name, timeout, logPath)
	}
}

var listeningRE = regexp.MustCompile(`^listening on (127\.0\.0\.1:\d+)$`)

// StartEnclave starts sigil-enclave on 127.0.0.1:port (0: any) with the
// local KMS and debug logs; it returns the process and its address.
func (r *Rig) StartEnclave(name string, port int, extra ...string) (*Proc, string, error) {
	args := append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--kms", "local", "--kms-key-file", r.KMSKey}, extra...)
	p, m, err := r.start(name, filepath.Join(r.Bin, "sigil-enclave"), args, listeningRE, 30*time.Second)
	if err != nil {
		return nil, "", err
	}
	return p, m[1], nil
}

// DaemonConfig is what differs between the scripts' daemons.
type DaemonConfig struct {
	Enclave     string // host:port
	Connections int
	RPCTimeout  string
	Watermark   string // "file" or "mem"
	Policy      string // the body of each key's tezos entry
	// VaultExtra is appended to the vault's config section, each line
	// indented by six spaces (e.g. an attested_channel section).
	VaultExtra string
}

var readyRE = regexp.MustCompile(`msg="signer ready" address=(\S+) utility_address=(\S+)`)

// Daemon is a running `sigil serve`.
type Daemon struct {
	*Proc
	API, Utility string // http://host:port
}

// StartDaemon writes a configuration for the rig's keys and starts `sigil
// serve`, waiting until it is ready (every key loaded).
func (r *Rig) StartDaemon(name string, c DaemonConfig) (*Daemon, error) {
	host, port, _ := net.SplitHostPort(c.Enclave)
	dir := filepath.Join(r.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var b strings.Builder
	// The scripts' load comes from one client address: the per-client cap
	// (128 by default) would refuse part of a burst.
	fmt.Fprintf(&b, "base_dir: %s\nserver: {address: \"127.0.0.1:0\", utility_address: \"127.0.0.1:0\", max_connections_per_client: 1024}\n", dir)
	fmt.Fprintf(&b, "vaults:\n  cs:\n    driver: confidentialspace\n    config:\n      host: %s\n      port: \"%s\"\n", host, port)
	fmt.Fprintf(&b, "      wip_provider_path: rig/wip\n      encryption_key_path: rig/kms\n      connections: %d\n", c.Connections)
	if c.RPCTimeout != "" {
		fmt.Fprintf(&b, "      rpc_timeout: %s\n", c.RPCTimeout)
	}
	fmt.Fprintf(&b, "      storage: {driver: file, config: %s}\n", r.KeyFile)
	for _, l := range strings.Split(strings.TrimRight(c.VaultExtra, "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	fmt.Fprintf(&b, "watermark: {driver: %s}\ntezos:\n", c.Watermark)
	for _, k := range r.Keys {
		fmt.Fprintf(&b, "  %s:\n%s", k.PKH, c.Policy)
	}
	cfg := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	p, m, err := r.start(name, filepath.Join(r.Bin, "sigil"), []string{"serve", "--no-list", "-c", cfg}, readyRE, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	return &Daemon{Proc: p, API: "http://" + m[1], Utility: "http://" + m[2]}, nil
}

// EnclaveStats asks the enclave for its counters (SIGUSR1) and returns
// them from the "enclave stats" line it logs.
func EnclaveStats(p *Proc) (map[string]int64, error) {
	before := strings.Count(p.Output(), `msg="enclave stats"`)
	if err := p.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out := p.Output()
		if strings.Count(out, `msg="enclave stats"`) > before {
			lines := strings.Split(out, "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if strings.Contains(lines[i], `msg="enclave stats"`) {
					return parseCounts(lines[i]), nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s logged no stats line", p.Name)
}

var kvRE = regexp.MustCompile(`(\w+)=(\d+)\b`)

func parseCounts(line string) map[string]int64 {
	out := map[string]int64{}
	for _, m := range kvRE.FindAllStringSubmatch(line, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		out[m[1]] = n
	}
	return out
}

// Metrics scrapes url (…/metrics) and returns every sample by its full
// series text (name{labels}).
func Metrics(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// Sum adds the samples whose series starts with prefix and contains every
// one of labels.
func Sum(m map[string]float64, prefix string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(k, l) {
				ok = false
				break
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// LoadAvg is /proc/loadavg's first three fields.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}
