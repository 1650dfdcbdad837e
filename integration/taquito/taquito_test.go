package taquito

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestRunRoundTrip(t *testing.T) {
	type out struct {
		Sum     int    `json:"sum"`
		Hex     string `json:"hex"`
		Big     string `json:"big"`
		Encoded string `json:"encoded"`
	}
	var got out
	Run(t, `
		const { b58Encode, PrefixV2 } = require('@taquito/utils');
		const pkh = new Uint8Array(20);
		return {
			sum: input.a + input.b,
			hex: new Uint8Array([1, 2, 255]),
			big: 2n ** 70n,
			encoded: b58Encode(pkh, PrefixV2.Ed25519PublicKeyHash),
		};`, map[string]int{"a": 2, "b": 40}, &got)
	want := out{Sum: 42, Hex: "0102ff", Big: "1180591620717411303424", Encoded: "tz1Ke2h7sDdakHJQh8WX4Z372du1KChsksyU"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestNodeModules(t *testing.T) {
	nm := NodeModules(t)
	if !filepath.IsAbs(nm) || filepath.Base(nm) != "node_modules" {
		t.Fatalf("NodeModules = %q", nm)
	}
	for _, p := range []string{"@taquito/signer", "@taquito/utils", "@taquito/remote-signer"} {
		if _, err := os.Stat(filepath.Join(nm, p, "package.json")); err != nil {
			t.Errorf("%s not installed: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(nm), "package-lock.json")); err != nil {
		t.Errorf("package-lock.json must be kept next to package.json: %v", err)
	}
}

func TestMissingDeps(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package.json"),
		[]byte(`{"dependencies":{"@x/present":"1.0.0","absent":"2.0.0"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "node_modules", "@x", "present"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node_modules", "@x", "present", "package.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	missing, err := missingDeps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(missing, ",") != "absent" {
		t.Fatalf("missingDeps = %v, want [absent]", missing)
	}
	if _, err := missingDeps(t.TempDir()); err == nil {
		t.Fatal("missingDeps without package.json: want an error")
	}
	// Without a lock file, npm ci cannot run: a clear error, no install.
	if err := ensureInstalled(dir); err == nil || !strings.Contains(err.Error(), "package-lock.json") {
		t.Fatalf("ensureInstalled without package-lock.json: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "node_modules", "absent"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node_modules", "absent", "package.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ensureInstalled(dir); err != nil {
		t.Fatalf("ensureInstalled with everything present: %v", err)
	}
}

func TestLockFileExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.lock")
	unlock, err := lockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		u2, err := lockFile(path)
		if err == nil {
			u2()
		}
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a second lock was granted while the first was held")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	<-done
}

func TestWithoutEnv(t *testing.T) {
	got := withoutEnv([]string{"NODE_PATH=/x", "A=1", "NODE_OPTIONS=--foo", "NODE_PATHX=2"}, "NODE_PATH", "NODE_OPTIONS")
	if strings.Join(got, " ") != "A=1 NODE_PATHX=2" {
		t.Fatalf("withoutEnv = %v", got)
	}
}

// fatalRecorder captures Fatal calls instead of failing the test.
type fatalRecorder struct {
	*testing.T
	msg string
}

func (r *fatalRecorder) Fatal(args ...any) { r.msg = fmt.Sprint(args...); runtime.Goexit() }
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runRecorded(t *testing.T, script string, output any) string {
	r := &fatalRecorder{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(r, script, nil, output)
	}()
	<-done
	return r.msg
}

func TestRunFailures(t *testing.T) {
	if msg := runRecorded(t, `throw new Error('boom-from-js');`, nil); !strings.Contains(msg, "boom-from-js") {
		t.Errorf("a throwing script: Fatal message %q, want node's stderr", msg)
	}
	var n int
	if msg := runRecorded(t, `return "not a number";`, &n); !strings.Contains(msg, "decoding") || strings.Contains(msg, "not a number") {
		t.Errorf("undecodable output: Fatal message %q", msg)
	}
	if msg := runRecorded(t, `return 7;`, &n); msg != "" || n != 7 {
		t.Errorf("a good script: %q, %d", msg, n)
	}
}
