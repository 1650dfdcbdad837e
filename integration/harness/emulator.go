package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// emulator is what the harness's local stand-ins for cloud services
// (dynalite, the Firestore emulator) have in common: one run at a time, a
// process or a container, started, stopped and restarted under one lock,
// with its output kept across restarts; and how a test gets one (see
// startShared and startPrivate).
type emulator struct {
	name  string       // "dynalite", "Firestore emulator": for messages
	start func() error // starts a run, setting proc or ctr; called with mu held (or before the emulator is shared)

	mu      sync.Mutex
	proc    *Process                        // the current run as a process
	ctr     *testcontainers.DockerContainer // or as a container
	startup time.Duration
	logs    strings.Builder // logs of earlier (stopped) runs
}

// emulated is a kind of emulator: it gives its emulator and says where it
// listens (for the test log).
type emulated interface {
	base() *emulator
	describe() string
}

// errMissing marks a missing prerequisite: the test is skipped outside CI.
type errMissing struct{ what string }

func (e *errMissing) Error() string { return e.what }

// shared holds the emulator of one kind the whole test binary shares.
type shared[E emulated] struct {
	once sync.Once
	e    E
	err  error
}

// startShared returns s's emulator, creating and starting it with create on
// first use; it is stopped when Main ends. name names the emulator in
// messages. The test is skipped under -short, and fails or is skipped as
// failStart says when the emulator cannot run.
func startShared[E emulated](t testing.TB, s *shared[E], name string, create func() (E, error)) E {
	t.Helper()
	SkipIfShort(t)
	s.once.Do(func() {
		s.e, s.err = create()
		if s.err == nil {
			e := s.e.base()
			atExit(func() { _ = e.Stop() })
		}
	})
	failStart(t, name, s.err)
	t.Logf("harness: shared %s, started in %v", s.e.describe(), s.e.base().StartupTime().Round(time.Millisecond))
	s.e.base().logOnFailure(t)
	return s.e
}

// startPrivate creates and starts an emulator for t alone (for tests that
// stop or restart it); it is stopped at t's cleanup, and in any case when
// Main ends. Otherwise as startShared.
func startPrivate[E emulated](t testing.TB, name string, create func() (E, error)) E {
	t.Helper()
	SkipIfShort(t)
	em, err := create()
	failStart(t, name, err)
	t.Logf("harness: private %s, started in %v", em.describe(), em.base().StartupTime().Round(time.Millisecond))
	e := em.base()
	atExit(func() { _ = e.Stop() })
	t.Cleanup(func() { _ = e.Stop() })
	e.logOnFailure(t)
	return em
}

// failStart ends t when an emulator could not start (err non-nil): a
// missing prerequisite (errMissing) skips it, unless the CI environment
// variable is set; anything else fails it.
func failStart(t testing.TB, name string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var missing *errMissing
	if errors.As(err, &missing) && os.Getenv("CI") == "" {
		t.Skipf("harness: cannot run %s: %v (the CI environment variable is not set, so skipping)", name, err)
	}
	t.Fatalf("harness: cannot run %s: %v", name, err)
}

// logOnFailure prints the last lines of e's log at t's cleanup if t failed.
func (e *emulator) logOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("harness: last lines of the %s log:\n%s", e.name, tail(e.Log(), 60))
		}
	})
}

// run starts a run and times it (mu held or e not yet shared).
func (e *emulator) run() error {
	begin := time.Now()
	if err := e.start(); err != nil {
		return err
	}
	e.startup = time.Since(begin)
	return nil
}

// runFresh is run for a first start on a port picked with freePort: another
// process may bind that port between the pick and the emulator's own bind
// (tests run in parallel packages), so on "address already in use" it picks
// another port with repick and tries again, a few times.
func (e *emulator) runFresh(repick func() error) error {
	for attempt := 1; ; attempt++ {
		err := e.run()
		if err == nil || attempt == 4 || !addrInUse(err) {
			return err
		}
		e.logs.WriteString("----- port taken by another process; retrying on another -----\n")
		if err := repick(); err != nil {
			return err
		}
	}
}

func addrInUse(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "address already in use") || strings.Contains(msg, "eaddrinuse")
}

// StartupTime is how long the last start took until the emulator answered.
func (e *emulator) StartupTime() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.startup
}

// Stop stops the emulator. Stopping a stopped one does nothing.
func (e *emulator) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopLocked()
}

func (e *emulator) stopLocked() error {
	switch {
	case e.proc != nil:
		e.proc.Stop()
		e.logs.WriteString(e.proc.Log())
		e.proc = nil
	case e.ctr != nil:
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.logs.WriteString(containerLogs(ctx, e.ctr))
		err := e.ctr.Terminate(ctx)
		e.ctr = nil
		return err
	}
	return nil
}

// Restart stops the emulator and starts it again.
func (e *emulator) Restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.stopLocked(); err != nil {
		return err
	}
	e.logs.WriteString("----- restart -----\n")
	return e.run()
}

// Log returns the emulator's output, across restarts.
func (e *emulator) Log() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.logs.String()
	switch {
	case e.proc != nil:
		s += e.proc.Log()
	case e.ctr != nil:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s += containerLogs(ctx, e.ctr)
	}
	return s
}

func containerLogs(ctx context.Context, c *testcontainers.DockerContainer) string {
	r, err := c.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("[container logs unavailable: %v]\n", err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// uniqueName returns a table or project name no other caller got:
// sigil-test-<next value of seq>-<random hex>.
func uniqueName(seq *atomic.Int64) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("sigil-test-%d-%s", seq.Add(1), hex.EncodeToString(b[:]))
}
