// Package taquito lets Go tests use Taquito, the JavaScript Tezos client, as
// an independent oracle: Run executes a JavaScript snippet under node with
// the Taquito packages of tools/taquito on its module path, feeds it a JSON
// input on stdin and decodes the JSON value it returns; NodeModules makes sure
// those packages are installed (running `npm ci` once, under a file lock, when
// they are missing) and returns their directory for tests that start their
// own node processes. Node.js missing is a test failure, never a skip.
package taquito

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts for one script run and for the one-time npm install.
const (
	runTimeout     = 2 * time.Minute
	installTimeout = 10 * time.Minute
)

// RepoRoot returns the repository root: the nearest directory, walking up
// from the working directory, that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatalf("taquito: %v", err)
	}
	return root
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getting working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found in the working directory or any parent")
		}
		dir = parent
	}
}

var (
	installMu   sync.Mutex
	installedAt string // node_modules path once known to be complete
)

// NodeModules makes sure tools/taquito/node_modules holds every dependency
// listed in tools/taquito/package.json, running `npm ci` there if not (once
// per machine at a time: concurrent test processes wait on a file lock), and
// returns the absolute node_modules path. It fails the test if node or npm
// is missing or the install fails.
func NodeModules(t testing.TB) string {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	if installedAt != "" {
		return installedAt
	}
	if _, err := nodePath(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(RepoRoot(t), "tools", "taquito")
	nm := filepath.Join(dir, "node_modules")
	if err := ensureInstalled(dir); err != nil {
		t.Fatalf("taquito: %v", err)
	}
	installedAt = nm
	return nm
}

func nodePath() (string, error) {
	p, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("taquito: node (Node.js >= 18) is not in PATH; the Taquito oracle tests need it " +
			"(install Node.js, then `npm ci --prefix tools/taquito`)")
	}
	return p, nil
}

// missingDeps lists the dependencies of dir/package.json that have no
// package.json under dir/node_modules.
func missingDeps(dir string) ([]string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return nil, fmt.Errorf("reading Taquito package.json: %w", err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "package.json"), err)
	}
	if len(pkg.Dependencies) == 0 {
		return nil, fmt.Errorf("%s lists no dependencies", filepath.Join(dir, "package.json"))
	}
	var missing []string
	for name := range pkg.Dependencies {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(name), "package.json")); err != nil {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// ensureInstalled runs `npm ci` in dir if a dependency is missing. The
// check and the install happen under an exclusive file lock, so that no
// test process sees a tree another one is installing.
func ensureInstalled(dir string) error {
	unlock, err := lockFile(filepath.Join(os.TempDir(), "sigil-taquito-"+pathTag(dir)+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	missing, err := missingDeps(dir)
	if err != nil || len(missing) == 0 {
		return err
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("%s not installed and npm is not in PATH (it comes with Node.js)", strings.Join(missing, ", "))
	}
	if _, err := os.Stat(filepath.Join(dir, "package-lock.json")); err != nil {
		return fmt.Errorf("%s is missing; `npm ci` needs it", filepath.Join(dir, "package-lock.json"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("installing Taquito (missing %s): npm ci in %s: %w\n%s", strings.Join(missing, ", "), dir, err, out)
	}
	if missing, err = missingDeps(dir); err != nil || len(missing) > 0 {
		return fmt.Errorf("after npm ci in %s, still missing %v (%v)", dir, missing, err)
	}
	return nil
}

// pathTag turns a path into a short string usable in a file name.
func pathTag(p string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(p); i++ {
		h = (h ^ uint32(p[i])) * 16777619
	}
	return fmt.Sprintf("%08x", h)
}

// prelude reads stdin as JSON into `input`, runs the snippet as the body of
// an async function and prints its result as JSON. Uint8Arrays become hex
// strings and BigInts decimal strings.
const prelude = `'use strict';
const __chunks = [];
process.stdin.on('data', (c) => __chunks.push(c));
process.stdin.on('end', async () => {
  try {
    const __text = Buffer.concat(__chunks).toString('utf8');
    const input = __text === '' ? null : JSON.parse(__text);
    const __result = await (async (input) => {
`

const postlude = `
    })(input);
    const __json = JSON.stringify(__result === undefined ? null : __result, (k, v) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
      if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('hex');
      return v;
    });
    process.stdout.write(__json, () => process.exit(0));
  } catch (e) {
    process.stderr.write('script failed: ' + ((e && e.stack) || String(e)) + '\n');
    process.exit(1);
  }
});
`

// Run executes script with node and decodes its result into output.
//
// script is the body of an async JavaScript function: it sees the decoded
// JSON input as `input`, may `require` any package of tools/taquito (e.g.
// '@taquito/signer', '@taquito/utils') and use await, and returns a
// JSON-serializable value (Uint8Array values are turned into hex strings,
// BigInt into decimal strings). input is marshalled to JSON and sent on
// stdin (nil sends null); output, if not nil, receives the returned value.
//
// Batch many cases in one call: each call starts a node process. On any
// failure Run calls t.Fatal with node's stderr. Input travels on stdin and is
// never echoed by Run, so test secrets stay out of the test log unless the
// script itself prints them.
func Run(t testing.TB, script string, input any, output any) {
	t.Helper()
	nm := NodeModules(t)
	node, err := nodePath()
	if err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatalf("taquito: encoding script input: %v", err)
	}
	file := filepath.Join(t.TempDir(), "taquito-script.js")
	if err := os.WriteFile(file, []byte(prelude+script+postlude), 0o600); err != nil {
		t.Fatalf("taquito: writing script: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, file)
	cmd.Dir = filepath.Dir(nm)
	cmd.Env = append(withoutEnv(os.Environ(), "NODE_PATH", "NODE_OPTIONS"), "NODE_PATH="+nm)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v", runTimeout)
		}
		t.Fatalf("taquito: node script failed: %v\nstderr:\n%s", err, stderr.Bytes())
	}
	if output == nil {
		return
	}
	if err := json.Unmarshal(stdout.Bytes(), output); err != nil {
		// The output is not printed: it may hold test keys.
		t.Fatalf("taquito: decoding the script's JSON result (%d bytes) into %T: %v\nstderr:\n%s",
			stdout.Len(), output, err, stderr.Bytes())
	}
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}
