// Package harness holds helpers for integration tests: building this
// module's binaries once per test binary (BuildBinary), running processes in
// their own process group with captured logs and readiness checks
// (StartProcess; TryStartProcess for one that may rightly refuse to
// start), free ports (FreePort), a Firestore emulator shared per
// test binary (StartFirestore) or private to one test (StartPrivateFirestore),
// run with testcontainers when a Docker engine is reachable and from the
// preinstalled Google Cloud SDK otherwise, and dynalite, a DynamoDB
// implementation installed by npm under tools/dynalite, likewise shared
// (StartDynalite) or private (StartPrivateDynalite), and Sigil's own
// processes: the mock enclave (StartEnclave), `sigil serve` waited for until
// it listens or is ready (StartDaemon), and a sign request client
// (PostSign). A test package using it calls
// Main from its TestMain, so that every process started is killed (as a
// group) when the tests end, whatever their outcome.
package harness

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
)

var (
	regMu     sync.Mutex
	stoppers  []func() // run at the end of Main, last registered first
	tempRoots []string // removed at the end of Main
)

// atExit registers f to run when Main ends (or on SIGINT/SIGTERM).
func atExit(f func()) {
	regMu.Lock()
	defer regMu.Unlock()
	stoppers = append(stoppers, f)
}

func runExit() {
	regMu.Lock()
	fs := stoppers
	stoppers = nil
	roots := tempRoots
	tempRoots = nil
	regMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, r := range roots {
		_ = os.RemoveAll(r)
	}
}

// tempRoot returns a directory that lives as long as the test binary.
func tempRoot(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	regMu.Lock()
	tempRoots = append(tempRoots, dir)
	regMu.Unlock()
	return dir, nil
}

// Main runs the tests and then stops every process and emulator the harness
// started. Call it from TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// An interrupt (SIGINT, SIGTERM) also stops them before the binary exits.
// Processes additionally get SIGKILL from the kernel if the test binary dies
// abruptly (Pdeathsig), so nothing outlives the tests.
func Main(m *testing.M) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "harness: %v: stopping started processes\n", s)
		runExit()
		os.Exit(2)
	}()
	code := m.Run()
	signal.Stop(sigs)
	runExit()
	os.Exit(code)
}

var (
	portMu   sync.Mutex
	portsOut = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this test binary has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("harness: find a free port: %v", err)
	}
	return p
}

func freePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !portsOut[p] {
			portsOut[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no unused port after 50 tries")
}

// SkipIfShort skips an integration test under `go test -short` (the unit
// pass of `task test`); CI and the README's `go test ./...` run them.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (emulator or child processes): skipped with -short")
	}
}
