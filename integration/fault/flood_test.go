package fault

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// floodConns is how many connections the flood opens.
const floodConns = 2000

// TestEnclaveHoldsUnderAFlood runs sigil-enclave with at most 256 open
// files (ulimit -n 256, set by the shell that execs it) and floods it with
// 2,000 connections, half idle and half stopped inside a frame (four
// header bytes announcing 100, then 10 bytes), held 3 s: longer than its
// handshake and frame timeouts (1 s here). The enclave must neither exit
// nor stop serving: a daemon connected before the flood signs with every
// key throughout, and (with the default cap, which evicts connections
// that never initialized) a command started during the flood gets new
// connections in. With a cap above the file limit, accept fails with
// EMFILE and must back off, not exit. The enclave counts and logs (at
// most once per 10 s per kind) what it did.
func TestEnclaveHoldsUnderAFlood(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < floodConns+300 {
		t.Fatalf("this test opens %d connections and its open-file limit is %d: raise it (ulimit -n %d)", floodConns, lim.Cur, floodConns+300)
	}
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	sigilBin := harness.BuildBinary(t, "./cmd/sigil")
	for _, v := range []struct {
		name   string
		args   []string
		emfile bool
	}{
		{"default cap", nil, false},
		{"cap above the file limit", []string{"--max-conns", "5000"}, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			kmsPath, keysPath := filepath.Join(dir, "enclave-kms.key"), filepath.Join(dir, "keys.json")
			keys := writeKeys(t, kmsPath, keysPath, tezos.Ed25519, tezos.Secp256k1, tezos.P256, tezos.BLS)
			port := harness.FreePort(t)
			listening := regexp.MustCompile(`^listening on 127\.0\.0\.1:\d+$`)
			args := append([]string{"-c", `ulimit -n 256 && exec "$0" "$@"`, enclaveBin,
				"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--kms", "local", "--kms-key-file", kmsPath,
				"--handshake-timeout", "1s", "--frame-timeout", "1s"}, v.args...)
			enc := harness.StartProcess(t, harness.ProcessOptions{
				Name: "sigil-enclave-256", Binary: "/bin/sh", Args: args,
				Ready: listening.MatchString, Timeout: 60 * time.Second, StopGrace: 5 * time.Second,
			})
			limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", enc.Pid()))
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`Max open files\s+256\s+256`).Match(limits) {
				t.Fatalf("the enclave does not run with 256 open files:\n%s", limits)
			}
			d := startDaemon(t, sigilBin, linkConfig(t, dir, port, keysPath, "2s", "mem", 2, keys))
			hc := newHTTPClient()
			signEach(t, hc, d, keys)

			// The flood.
			var mu sync.Mutex
			var open []net.Conn
			var dialErrs int
			var wg sync.WaitGroup
			for g := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range floodConns / 20 {
						c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
						mu.Lock()
						if err != nil {
							dialErrs++
							mu.Unlock()
							continue
						}
						open = append(open, c)
						mu.Unlock()
						if (g+i)%2 == 0 {
							_, _ = c.Write([]byte{0, 0, 0, 100, 0xa1, 0x6a, 'I', 'n', 'i', 't', 'i', 'a', 'l', 'i'})
						}
					}
				}()
			}
			// The daemon signs while the flood comes in and is held.
			floodEnd := time.Now().Add(3 * time.Second)
			signed := 0
			for time.Now().Before(floodEnd) {
				signEach(t, hc, d, keys)
				signed += len(keys)
				time.Sleep(50 * time.Millisecond)
			}
			wg.Wait()
			if !v.emfile {
				// A new client gets in during the flood (connections that
				// never initialized make room).
				cfg := linkConfig(t, t.TempDir(), port, keysPath, "5s", "mem", 1, keys)
				if out, errOut, err := runCLI(t, sigilBin, "-c", cfg, "--timeout", "30s", "list"); err != nil || strings.Count(out, "Public Key Hash") != len(keys) {
					t.Errorf("sigil list during the flood: %v\n%s\n%s", err, out, errOut)
				}
			}
			mu.Lock()
			t.Logf("flood: %d connections open, %d dials failed; the daemon signed %d times meanwhile", len(open), dialErrs, signed)
			for _, c := range open {
				c.Close()
			}
			mu.Unlock()

			if enc.Exited() {
				t.Fatalf("the enclave exited:\n%s", enc.Tail(30))
			}
			signEach(t, hc, d, keys)
			if st, _, err := getStatus(hc, d.utility+"/healthz"); err != nil || st != http.StatusOK {
				t.Errorf("/healthz %d %v after the flood", st, err)
			}
			st := enclaveStats(t, enc)
			t.Logf("enclave: %v", st)
			if st["accepted"] < floodConns/4 {
				t.Errorf("the enclave accepted only %d connections of the flood", st["accepted"])
			}
			if st["handshake_timeouts"]+st["frame_timeouts"]+st["evicted"] == 0 {
				t.Errorf("no flood connection was timed out or evicted: %v", st)
			}
			if v.emfile && st["accept_errors"] == 0 {
				t.Errorf("with a cap above the file limit, accept never failed: %v", st)
			}
			log := enc.Log()
			for _, kind := range []string{"sent no Initialize", "did not arrive whole", "accepting a connection failed", "closed the oldest connection"} {
				if n := strings.Count(log, kind); n > 5 {
					t.Errorf("%d log lines %q in a few seconds: not rate-limited", n, kind)
				}
			}
			if v.emfile && !strings.Contains(log, "too many open files") {
				t.Errorf("the enclave did not log the EMFILE it backed off from:\n%s", enc.Tail(20))
			}
		})
	}
}
