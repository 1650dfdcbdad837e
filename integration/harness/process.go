package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ProcessOptions describe a process to start.
type ProcessOptions struct {
	// Name labels the process in logs and errors; defaults to the binary's
	// base name.
	Name string
	// Binary is the executable path (see BuildBinary).
	Binary string
	Args   []string
	// Env is added to the test binary's environment (later entries win).
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
	// Ready, if set, is matched against every line the process writes to
	// stdout or stderr; the process is ready at the first match.
	Ready func(line string) bool
	// Probe, if set, is polled every 50 ms; the process is ready when it
	// returns true (for example an HTTP health check). With both Ready and
	// Probe, both must have succeeded. With neither, the process is ready
	// as soon as it started.
	Probe func() bool
	// Timeout bounds the wait for readiness; 0 means 60 s.
	Timeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL; 0
	// means 10 s.
	StopGrace time.Duration
}

// Process is a started process, leader of its own process group.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *logWriter
	done    chan struct{}
	waitErr error
	grace   time.Duration
}

// StartProcess starts a process in its own process group, captures its
// stdout and stderr to a log file, and waits until it is ready (see
// ProcessOptions). It fails the test, printing the log, if the process does
// not start, exits or is not ready in time. The process is stopped at the
// test's cleanup (and its log tail printed if the test failed), and in any
// case when Main ends.
func StartProcess(t testing.TB, opts ProcessOptions) *Process {
	t.Helper()
	p, err := TryStartProcess(t, opts)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

// TryStartProcess is StartProcess for a process that may rightly refuse to
// start (a configuration one program accepts and another rejects): it
// returns the error instead of failing the test. The process is returned
// whenever it was started, also with an error (it then has exited or been
// killed), so that its Log can be read. A started process is stopped at the
// test's cleanup, its log tail printed if the test failed, and in any case
// when Main ends.
func TryStartProcess(t testing.TB, opts ProcessOptions) (*Process, error) {
	t.Helper()
	p, err := startProcess(opts)
	if p == nil {
		return nil, err
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("harness: last lines of %s (%s):\n%s", p.name, p.logPath, p.Tail(80))
		}
	})
	return p, err
}

// startProcess returns the process whenever it was started (with an error
// if it then exited or was not ready in time), nil if it could not start.
func startProcess(opts ProcessOptions) (*Process, error) {
	name := opts.Name
	if name == "" {
		name = filepath.Base(opts.Binary)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 10 * time.Second
	}
	dir, err := tempRoot("sigil-proc-")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, sanitize(name)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var readyOnce sync.Once
	lw := &logWriter{file: f}
	if opts.Ready != nil {
		lw.onLine = func(line string) {
			if opts.Ready(line) {
				readyOnce.Do(func() { close(ready) })
			}
		}
	} else {
		close(ready)
	}

	cmd := exec.Command(opts.Binary, opts.Args...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Dir = opts.Dir
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, opts.Binary, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, log: lw, done: make(chan struct{}), grace: opts.StopGrace}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	atExit(p.Kill)

	deadline := time.NewTimer(opts.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	probed := opts.Probe == nil
	lineReady := false
	for !(probed && lineReady) {
		select {
		case <-ready:
			lineReady = true
			ready = nil
		case <-p.done:
			return p, fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", name, p.waitErr, logPath, p.Tail(60))
		case <-deadline.C:
			p.Kill()
			return p, fmt.Errorf("%s not ready after %v; log %s:\n%s", name, opts.Timeout, logPath, p.Tail(60))
		case <-tick.C:
			if !probed && opts.Probe() {
				probed = true
			}
		}
	}
	return p, nil
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the whole process group and waits for the process
// to be reaped.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
	}
}

// Stop sends SIGTERM to the process group, waits for the process to exit
// (StopGrace), then kills the group.
func (p *Process) Stop() {
	if !p.Exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(p.grace):
		}
	}
	p.Kill() // also reaps stragglers left in the group
}

// Wait waits for the process to exit and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Log returns everything the process wrote so far.
func (p *Process) Log() string { return p.log.String() }

// LogPath returns the log file's path.
func (p *Process) LogPath() string { return p.logPath }

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string { return tail(p.Log(), n) }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[… %d earlier lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// logWriter copies output to a file and to memory, calling onLine for every
// complete line.
type logWriter struct {
	mu      sync.Mutex
	file    *os.File
	buf     bytes.Buffer
	partial []byte
	onLine  func(string)
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.file.Write(b)
	w.buf.Write(b)
	if w.onLine == nil {
		return len(b), nil
	}
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.onLine(strings.TrimRight(string(w.partial[:i]), "\r"))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a huge unterminated line: match it as is
		w.onLine(string(w.partial))
		w.partial = nil
	}
	return len(b), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
