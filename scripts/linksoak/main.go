// Command linksoak measures what the daemon's enclave link costs when
// nothing happens, and what one enclave restart costs, on real processes
// (sigil-enclave with the local KMS stand-in, `sigil serve` with a
// confidentialspace vault, file watermarks), as docs/performance.md
// reports them. Usage (scripts/link-soak.sh builds the binaries first):
//
//	linksoak -bin DIR -mode idle    [-keys 50] [-connections 4] [-rpc-timeout 1s] [-idle 1h] [-sample 1m]
//	linksoak -bin DIR -mode restart [-keys 50] [-connections 4] [-rpc-timeout 1s] [-settle 10s]
//
// idle: once every connection holds every key, the daemon is left alone
// for -idle; the enclave's counters (connections accepted, Initialize,
// Import, KMS calls) and the daemon's metrics (redials, Import and
// Initialize requests, failed requests) are sampled every -sample, and
// must not move. Then one key of each type signs, verified.
//
// restart: the enclave is killed (SIGKILL) and started again on the same
// port with the same KMS key; once the daemon is ready and every
// connection holds every key again, it waits -settle (longer than every
// timeout involved) and checks that the new enclave saw exactly one
// connection, one Initialize, and one Import and one KMS open per key per
// connection. Then one key of each type signs, verified.
//
// It exits non-zero when a count is not what it must be.
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/scripts/internal/rig"
)

func main() {
	bin := flag.String("bin", "", "directory holding sigil and sigil-enclave")
	mode := flag.String("mode", "idle", "idle or restart")
	nkeys := flag.Int("keys", 50, "stored keys (all four types in turn)")
	conns := flag.Int("connections", 4, "the vault's pool size")
	rpcTimeout := flag.Duration("rpc-timeout", time.Second, "the vault's rpc_timeout")
	idle := flag.Duration("idle", time.Hour, "idle mode: how long nothing is asked")
	sample := flag.Duration("sample", time.Minute, "idle mode: how often the counters are read")
	settle := flag.Duration("settle", 10*time.Second, "restart mode: how long to stay idle after the restart before counting")
	keep := flag.Bool("keep", false, "keep the work directory (logs)")
	flag.Parse()
	if *bin == "" {
		fail(fmt.Errorf("-bin is required"))
	}
	r, err := rig.New(*bin)
	if err != nil {
		fail(err)
	}
	s := &soak{r: r, keys: *nkeys, conns: *conns, rpcTimeout: *rpcTimeout}
	switch *mode {
	case "idle":
		err = s.idle(*idle, *sample)
	case "restart":
		err = s.restart(*settle)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	r.Close(*keep || err != nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "linksoak: %v (logs in %s)\n", err, r.Dir)
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "linksoak:", err)
	os.Exit(1)
}

type soak struct {
	r          *rig.Rig
	keys       int
	conns      int
	rpcTimeout time.Duration
	enclave    *rig.Proc
	addr       string
	daemon     *rig.Daemon
}

// counts is one reading of everything that must not move while idle.
type counts struct {
	Accepted, Initialize, Import, KMS            int64   // at the enclave
	Redials, RPCImport, RPCInitialize, RPCErrors float64 // in the daemon's metrics
	DaemonLogLines                               int
	DaemonCPU, EnclaveCPU                        time.Duration
}

func (s *soak) read() (counts, error) {
	var c counts
	st, err := rig.EnclaveStats(s.enclave)
	if err != nil {
		return c, err
	}
	c.Accepted, c.Initialize, c.Import, c.KMS = st["accepted"], st["requests_initialize"], st["requests_import"], st["kms_calls"]
	m, err := rig.Metrics(s.daemon.Utility + "/metrics")
	if err != nil {
		return c, err
	}
	c.Redials = rig.Sum(m, "sigil_enclave_redials_total")
	c.RPCImport = rig.Sum(m, "sigil_enclave_rpc_duration_seconds_count", `method="Import"`)
	c.RPCInitialize = rig.Sum(m, "sigil_enclave_rpc_duration_seconds_count", `method="Initialize"`)
	c.RPCErrors = rig.Sum(m, "sigil_enclave_rpc_errors_total")
	c.DaemonLogLines = strings.Count(s.daemon.Output(), "\n")
	c.DaemonCPU, c.EnclaveCPU = s.daemon.CPU(), s.enclave.CPU()
	return c, nil
}

func (c counts) minus(b counts) string {
	return fmt.Sprintf("enclave: +%d connections, +%d Initialize, +%d Import, +%d KMS calls; daemon: +%g redials, +%g Import, +%g Initialize, +%g failed requests, +%d log lines; CPU daemon %v, enclave %v",
		c.Accepted-b.Accepted, c.Initialize-b.Initialize, c.Import-b.Import, c.KMS-b.KMS,
		c.Redials-b.Redials, c.RPCImport-b.RPCImport, c.RPCInitialize-b.RPCInitialize, c.RPCErrors-b.RPCErrors,
		c.DaemonLogLines-b.DaemonLogLines, c.DaemonCPU-b.DaemonCPU, c.EnclaveCPU-b.EnclaveCPU)
}

func (c counts) still(b counts) bool {
	return c.Accepted == b.Accepted && c.Initialize == b.Initialize && c.Import == b.Import && c.KMS == b.KMS &&
		c.Redials == b.Redials && c.RPCImport == b.RPCImport && c.RPCInitialize == b.RPCInitialize &&
		c.RPCErrors == b.RPCErrors && c.DaemonLogLines == b.DaemonLogLines
}

// setUp starts the enclave and the daemon and waits until every connection
// holds every key.
func (s *soak) setUp(port int) error {
	if len(s.r.Keys) == 0 {
		if err := s.r.MakeKeys(s.keys, tezos.KeyTypes...); err != nil {
			return err
		}
	}
	var err error
	if s.enclave, s.addr, err = s.r.StartEnclave("enclave", port, "--log-level", "info"); err != nil {
		return err
	}
	if s.daemon == nil {
		s.daemon, err = s.r.StartDaemon("daemon", rig.DaemonConfig{
			Enclave: s.addr, Connections: s.conns, RPCTimeout: s.rpcTimeout.String(), Watermark: "file",
			Policy: "    allow:\n      generic: [transaction]\n      attestation:\n",
		})
		if err != nil {
			return err
		}
	}
	return s.waitSynced(2 * time.Minute)
}

// waitSynced waits until the enclave counted one Import per key per
// connection, and the daemon is ready.
func (s *soak) waitSynced(within time.Duration) error {
	want := int64(s.keys * s.conns)
	deadline := time.Now().Add(within)
	for {
		st, err := rig.EnclaveStats(s.enclave)
		if err != nil {
			return err
		}
		if st["requests_import"] >= want && s.healthz() == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v the enclave counted %d Imports (want %d) and /healthz is %d", within, st["requests_import"], want, s.healthz())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *soak) healthz() int {
	resp, err := http.Get(s.daemon.Utility + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// signEachType signs a transaction with one key of each type and verifies
// the signatures.
func (s *soak) signEachType() error {
	msg, _ := hex.DecodeString(loadgen.GenericTransactionHex)
	seen := map[tezos.KeyType]bool{}
	for _, k := range s.r.Keys {
		if seen[k.PK.Type] {
			continue
		}
		seen[k.PK.Type] = true
		resp, err := http.Post(s.daemon.API+"/keys/"+k.PKH, "application/json", strings.NewReader(strconv.Quote(hex.EncodeToString(msg))))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Signature string `json:"signature"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
			return fmt.Errorf("sign with %s: %d %s", k.PKH, resp.StatusCode, body)
		}
		sig, err := tezos.ParseSignature(out.Signature)
		if err != nil {
			return err
		}
		if err := k.PK.Verify(msg, sig, tezos.SignVersionLatest); err != nil {
			return fmt.Errorf("sign with %s: %v", k.PKH, err)
		}
	}
	fmt.Printf("signed and verified with one key of each type (%d)\n", len(seen))
	return nil
}

func (s *soak) idle(d, every time.Duration) error {
	if err := s.setUp(0); err != nil {
		return err
	}
	start := time.Now()
	fmt.Printf("linksoak idle: %s UTC, load %s; %d keys, %d connections, rpc_timeout %v: idle for %v (%.0f x rpc_timeout)\n",
		start.UTC().Format("2006-01-02 15:04:05"), rig.LoadAvg(), s.keys, s.conns, s.rpcTimeout, d, d.Seconds()/s.rpcTimeout.Seconds())
	base, err := s.read()
	if err != nil {
		return err
	}
	fmt.Printf("after start-up: enclave %d connections, %d Initialize, %d Import, %d KMS calls; daemon %g redials\n",
		base.Accepted, base.Initialize, base.Import, base.KMS, base.Redials)
	moved := false
	for time.Since(start) < d {
		time.Sleep(min(every, d-time.Since(start)))
		now, err := s.read()
		if err != nil {
			return err
		}
		fmt.Printf("%6.0f s idle: %s\n", time.Since(start).Seconds(), now.minus(base))
		if !now.still(base) {
			moved = true
		}
	}
	end, err := s.read()
	if err != nil {
		return err
	}
	fmt.Printf("idle %v (load %s): %s\n", time.Since(start).Round(time.Second), rig.LoadAvg(), end.minus(base))
	if err := s.signEachType(); err != nil {
		return err
	}
	after, err := s.read()
	if err != nil {
		return err
	}
	fmt.Printf("after signing: +%d Import, +%d KMS calls, +%g redials since start-up\n", after.Import-base.Import, after.KMS-base.KMS, after.Redials-base.Redials)
	if moved || after.Import != base.Import || after.KMS != base.KMS || after.Redials != base.Redials {
		return fmt.Errorf("the idle link was not free")
	}
	fmt.Println("idle link: free (no connection, Initialize, Import, KMS call, redial or log line)")
	return nil
}

func (s *soak) restart(settle time.Duration) error {
	if err := s.setUp(0); err != nil {
		return err
	}
	fmt.Printf("linksoak restart: %s UTC, load %s; %d keys, %d connections, rpc_timeout %v\n",
		time.Now().UTC().Format("2006-01-02 15:04:05"), rig.LoadAvg(), s.keys, s.conns, s.rpcTimeout)
	base, err := s.read()
	if err != nil {
		return err
	}
	_, port, _ := strings.Cut(s.addr, ":")
	p, _ := strconv.Atoi(port)
	s.enclave.Kill()
	killed := time.Now()
	if err := s.setUp(p); err != nil {
		return err
	}
	synced := time.Since(killed)
	time.Sleep(settle)
	after, err := s.read()
	if err != nil {
		return err
	}
	want := int64(s.keys * s.conns)
	fmt.Printf("after the restart (ready and synced %v after the kill, then %v idle): new enclave %d connections, %d Initialize, %d Import, %d KMS calls (want %d, %d, %d, %d); daemon +%g redials, +%g Import\n",
		synced.Round(time.Millisecond), settle, after.Accepted, after.Initialize, after.Import, after.KMS,
		s.conns, s.conns, want, want, after.Redials-base.Redials, after.RPCImport-base.RPCImport)
	fmt.Printf("re-imports per key per connection: %.2f\n", float64(after.Import)/float64(want))
	if err := s.signEachType(); err != nil {
		return err
	}
	if after.Accepted != int64(s.conns) || after.Initialize != int64(s.conns) || after.Import != want || after.KMS != want {
		return fmt.Errorf("the restart did not cost exactly one connection, Initialize, Import and KMS open per key per connection")
	}
	fmt.Println("restart: exactly one re-import per key per connection")
	return nil
}
