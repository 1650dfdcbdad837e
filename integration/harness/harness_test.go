package harness

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestFreePort(t *testing.T) {
	a, b := FreePort(t), FreePort(t)
	if a == b {
		t.Fatalf("FreePort returned %d twice", a)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(a))
	if err != nil {
		t.Fatalf("port %d is not free: %v", a, err)
	}
	_ = l.Close()
}

func TestBuildAndStartProcess(t *testing.T) {
	bin := BuildBinary(t, "./integration/harness/testdata/hello")
	if again := BuildBinary(t, "./integration/harness/testdata/hello"); again != bin {
		t.Fatalf("second BuildBinary returned %s, want the cached %s", again, bin)
	}
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	p := StartProcess(t, ProcessOptions{
		Name:   "hello",
		Binary: bin,
		Args:   []string{addr},
		Ready:  func(line string) bool { return strings.HasPrefix(line, "listening on ") },
	})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("process ready but not serving: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q", body)
	}
	p.Stop()
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("graceful stop: exit error %v, want a clean exit on SIGTERM", err)
	}
	log := p.Log()
	for _, want := range []string{"some noise", "listening on", "terminated"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	if data, err := os.ReadFile(p.LogPath()); err != nil || string(data) != log {
		t.Fatalf("log file differs from Log() (%v)", err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestKillTakesTheWholeGroup(t *testing.T) {
	p := StartProcess(t, ProcessOptions{
		Name:   "sh-with-child",
		Binary: "/bin/sh",
		Args:   []string{"-c", "sleep 300 & echo child=$!; echo ready; wait"},
		Ready:  func(line string) bool { return line == "ready" },
	})
	var child int
	for _, line := range strings.Split(p.Log(), "\n") {
		if v, ok := strings.CutPrefix(line, "child="); ok {
			child, _ = strconv.Atoi(v)
		}
	}
	if child == 0 || !alive(child) {
		t.Fatalf("no live grandchild found in log %q", p.Log())
	}
	p.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived Kill", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Wait(); err == nil {
		t.Fatal("a killed process reported a clean exit")
	}
}

func TestExitBeforeReady(t *testing.T) {
	start := time.Now()
	_, err := startProcess(ProcessOptions{
		Name:   "quitter",
		Binary: "/bin/sh",
		Args:   []string{"-c", "echo boom >&2; exit 3"},
		Ready:  func(string) bool { return false },
	})
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("error %v should say the process exited and show its log", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("exit was noticed late")
	}
}

func TestReadyTimeout(t *testing.T) {
	start := time.Now()
	_, err := startProcess(ProcessOptions{
		Name:    "sleeper",
		Binary:  "/bin/sh",
		Args:    []string{"-c", "echo waiting; exec sleep 300"},
		Ready:   func(string) bool { return false },
		Timeout: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "not ready after") || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("error %v should report the timeout with the log", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestProbeReadiness(t *testing.T) {
	bin := BuildBinary(t, "./integration/harness/testdata/hello")
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	probes := 0
	StartProcess(t, ProcessOptions{
		Binary: bin,
		Args:   []string{addr},
		Probe: func() bool {
			probes++
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return true
		},
	})
	if probes == 0 {
		t.Fatal("probe never ran")
	}
}

func TestSharedFirestore(t *testing.T) {
	f := StartFirestore(t)
	if f2 := StartFirestore(t); f2 != f {
		t.Fatal("StartFirestore started a second shared emulator")
	}
	if !emulatorOK(f.Host()) {
		t.Fatalf("emulator at %s does not answer Ok", f.Host())
	}
	if env := f.Env(); len(env) != 1 || env[0] != "FIRESTORE_EMULATOR_HOST="+f.Host() {
		t.Fatalf("Env() = %v", env)
	}
	a, b := f.NewProject(t), f.NewProject(t)
	if a == b || a == "" {
		t.Fatalf("NewProject returned %q and %q", a, b)
	}
	t.Logf("emulator mode %s, start-up %v", f.Mode(), f.StartupTime())
}

func TestPrivateFirestoreStopRestart(t *testing.T) {
	f := StartPrivateFirestore(t)
	host := f.Host()
	pid := 0
	if f.Mode() == "local" {
		pid = f.proc.Pid()
	}
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	if emulatorOK(host) {
		t.Fatal("emulator still answers after Stop")
	}
	if pid != 0 {
		if err := syscall.Kill(-pid, 0); err == nil {
			t.Fatal("emulator process group still exists after Stop")
		}
	}
	if err := f.Restart(); err != nil {
		t.Fatal(err)
	}
	if f.Mode() == "local" && f.Host() != host {
		t.Fatalf("local restart moved the emulator from %s to %s", host, f.Host())
	}
	if !emulatorOK(f.Host()) {
		t.Fatal("emulator does not answer after Restart")
	}
	if !strings.Contains(f.Log(), "----- restart -----") {
		t.Fatal("log does not span the restart")
	}
	t.Logf("emulator restart took %v", f.StartupTime())
}

// A first start that loses its port to another process ("address already
// in use") is retried on another port; other failures are not retried.
func TestRunFreshRetriesOnTakenPort(t *testing.T) {
	fails := 2
	e := &emulator{name: "fake"}
	e.start = func() error {
		if fails > 0 {
			fails--
			return errors.New("fake exited before it was ready: java.net.BindException: Address already in use")
		}
		return nil
	}
	picks := 0
	if err := e.runFresh(func() error { picks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if picks != 2 {
		t.Fatalf("repicked %d times, want 2", picks)
	}
	e.start = func() error { return errors.New("no java") }
	if err := e.runFresh(func() error { t.Fatal("repicked for another error"); return nil }); err == nil {
		t.Fatal("a failure was swallowed")
	}
}

func TestTryStartProcessRefused(t *testing.T) {
	p, err := TryStartProcess(t, ProcessOptions{
		Name:   "refuser",
		Binary: "/bin/sh",
		Args:   []string{"-c", "echo 'bad config: field x' >&2; exit 1"},
		Ready:  func(string) bool { return false },
	})
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("error %v should say the process exited", err)
	}
	if p == nil || !p.Exited() || !strings.Contains(p.Log(), "bad config: field x") {
		t.Fatalf("the refused process should be returned, exited, with its log (got %v)", p)
	}
	if err := p.Wait(); err == nil {
		t.Fatal("exit status 1 reported as a clean exit")
	}
}

func TestTryStartProcessStarted(t *testing.T) {
	p, err := TryStartProcess(t, ProcessOptions{
		Name:   "starter",
		Binary: "/bin/sh",
		Args:   []string{"-c", "echo up; exec sleep 300"},
		Ready:  func(line string) bool { return line == "up" },
	})
	if err != nil || p == nil || p.Exited() {
		t.Fatalf("TryStartProcess: %v, %v", p, err)
	}
}
