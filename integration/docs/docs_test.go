package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// docFiles lists README.md and docs/*.md, relative to root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	m, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m {
		files = append(files, filepath.Join("docs", filepath.Base(p)))
	}
	sort.Strings(files[1:])
	return files
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDocs checks and runs every block of the documentation (see the
// package comment): each file is a subtest, each static check a subtest of
// it, and the file's runnable blocks one session.
func TestDocs(t *testing.T) {
	harness.SkipIfShort(t)
	root := moduleRoot(t)
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	enclaveBin = harness.BuildBinary(t, "./cmd/sigil-enclave")
	for _, file := range docFiles(t, root) {
		blocks, err := readBlocks(root, file)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(file, func(t *testing.T) {
			var session []block
			for _, b := range blocks {
				if err := checkDirective(b); err != nil {
					t.Error(err)
					continue
				}
				switch b.Directive {
				case "run", "daemon", "cloud", "system":
					session = append(session, b)
					continue
				}
				t.Run(fmt.Sprintf("line-%d", b.Line), func(t *testing.T) {
					if err := checkStatic(root, sigil, b); err != nil {
						t.Error(err)
					}
				})
			}
			if len(session) > 0 && !t.Failed() {
				t.Run("session", func(t *testing.T) {
					if err := runSession(t, root, session); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
}

// checkStatic checks a block that is not run in a session.
func checkStatic(root, sigil string, b block) error {
	switch {
	case b.Lang == "json":
		return checkJSON(b)
	case b.Directive == "yaml":
		var v any
		if err := yaml.Unmarshal([]byte(b.Body), &v); err != nil {
			return fmt.Errorf("%s: not YAML: %v", b, err)
		}
		return nil
	case b.Directive == "config":
		return checkConfig(sigil, b, b.Body)
	case b.Directive == "config-fragment":
		merged, err := mergeFragment(b.Body)
		if err != nil {
			return fmt.Errorf("%s: %v", b, err)
		}
		return checkConfig(sigil, b, merged)
	case b.Directive == "bench":
		return checkBench(root, b)
	case b.Directive == "record":
		return checkRecord(root, b)
	case b.Directive == "example":
		return checkExample(root, b)
	case b.Directive == "covered-by":
		return checkCoveredBy(root, b)
	}
	return nil
}

// checkJSON parses a JSON block: one value, or one value per line (a log,
// an export in JSON lines).
func checkJSON(b block) error {
	dec := json.NewDecoder(strings.NewReader(b.Body))
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if err != nil {
			if err.Error() == "EOF" && n > 0 {
				return nil
			}
			return fmt.Errorf("%s: not JSON: %v", b, err)
		}
		n++
	}
}

// checkConfig runs `sigil config check` on a configuration. The base
// directory is a fresh temporary one; variables a block names with
// env=NAME=VALUE arguments are set, and a client-key=NAME argument makes
// the daemon's attested channel key ${BASE_DIR}/NAME first.
func checkConfig(sigil string, b block, cfg string) error {
	dir, err := os.MkdirTemp("", "doctest-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	state := filepath.Join(dir, "state")
	for _, a := range b.Args {
		// client-key=NAME: the daemon's key of the attested channel, made
		// by sigil enclave-client-key as ${BASE_DIR}/NAME.
		if name, ok := strings.CutPrefix(a, "client-key="); ok {
			if err := os.MkdirAll(state, 0o700); err != nil {
				return err
			}
			if out, err := exec.Command(sigil, "enclave-client-key", filepath.Join(state, name)).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: sigil enclave-client-key: %v\n%s", b, err, out)
			}
		}
	}
	cmd := exec.Command(sigil, "config", "check", "-c", path, "--base-dir", state)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	for _, a := range b.Args {
		if v, ok := strings.CutPrefix(a, "env="); ok {
			cmd.Env = append(cmd.Env, v)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: sigil config check refuses the configuration: %v\n%s\n--- configuration:\n%s", b, err, out, cfg)
	}
	return nil
}

// fragmentBase is the configuration a fragment is merged into: its
// top-level sections replace these.
const fragmentBase = `server:
  address: 127.0.0.1:6732
  utility_address: 127.0.0.1:9583
vaults:
  dev:
    driver: mem
`

// mergeFragment merges a fragment's top-level sections into fragmentBase.
func mergeFragment(frag string) (string, error) {
	var base, f yaml.Node
	if err := yaml.Unmarshal([]byte(fragmentBase), &base); err != nil {
		return "", err
	}
	if err := yaml.Unmarshal([]byte(frag), &f); err != nil {
		return "", fmt.Errorf("not YAML: %v", err)
	}
	if len(f.Content) != 1 || f.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("a configuration fragment is a mapping of top-level sections")
	}
	bm, fm := base.Content[0], f.Content[0]
	for i := 0; i+1 < len(fm.Content); i += 2 {
		k := fm.Content[i].Value
		replaced := false
		for j := 0; j+1 < len(bm.Content); j += 2 {
			if bm.Content[j].Value == k {
				bm.Content[j+1] = fm.Content[i+1]
				replaced = true
			}
		}
		if !replaced {
			bm.Content = append(bm.Content, fm.Content[i], fm.Content[i+1])
		}
	}
	out, err := yaml.Marshal(bm)
	return string(out), err
}

// shellLines joins continued lines and drops comments and blank lines.
func shellLines(body string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(body, "\n") {
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(l)
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		out = append(out, s)
	}
	return out
}

// bashParse runs bash -n on a block.
func bashParse(b block) error {
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = strings.NewReader(b.Body)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: bash -n: %v\n%s", b, err, out)
	}
	return nil
}

var benchRE = regexp.MustCompile(`-bench[= ]('[^']*'|"[^"]*"|\S+)`)

// checkBench: every `go test … -bench X … PKG…` line names benchmarks that
// exist (go test -list), the other lines as in checkRecord.
func checkBench(root string, b block) error {
	if err := bashParse(b); err != nil {
		return err
	}
	found := false
	for _, l := range shellLines(b.Body) {
		if !strings.HasPrefix(l, "go test") {
			continue
		}
		m := benchRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		found = true
		re, _, _ := strings.Cut(strings.Trim(m[1], `'"`), "/") // go test -list matches top-level names
		var pkgs []string
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "./") {
				pkgs = append(pkgs, f)
			}
		}
		if len(pkgs) == 0 {
			return fmt.Errorf("%s: %q names no package", b, l)
		}
		for _, p := range pkgs {
			cmd := exec.Command("go", "test", "-list", re, p)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: go test -list %s %s: %v\n%s", b, re, p, err, out)
			}
			if !strings.Contains(string(out), "Benchmark") {
				return fmt.Errorf("%s: no benchmark of %s matches -bench %s:\n%s", b, p, re, out)
			}
		}
	}
	if !found {
		return fmt.Errorf("%s: a bench block without a `go test … -bench` line", b)
	}
	return checkPaths(root, b)
}

// checkExample: a block for a program that is not installed here
// (`example PROGRAM…`): parsed by bash, every command line starts with one
// of the named programs, and every repository path it names exists.
func checkExample(root string, b block) error {
	if len(b.Args) == 0 {
		return fmt.Errorf("%s: example names the programs it needs (example octez-client)", b)
	}
	if err := bashParse(b); err != nil {
		return err
	}
	for _, l := range shellLines(b.Body) {
		prog := strings.Fields(l)[0]
		ok := false
		for _, a := range b.Args {
			ok = ok || prog == a
		}
		if !ok {
			return fmt.Errorf("%s: %q runs %s, which the directive does not name: run it elsewhere", b, l, prog)
		}
	}
	return checkPaths(root, b)
}

// checkRecord: parsed by bash, and every repository path it names exists.
func checkRecord(root string, b block) error {
	if err := bashParse(b); err != nil {
		return err
	}
	return checkPaths(root, b)
}

var repoPathRE = regexp.MustCompile(`(?:^|[\s=(])(?:\./)?((?:scripts|cmd|domain|adapters|integration|deploy|tools|docs|app|ports)/[A-Za-z0-9_./-]*)`)

// checkPaths: every path under a top-level directory of the repository
// that the block names exists.
func checkPaths(root string, b block) error {
	for _, l := range shellLines(b.Body) {
		for _, m := range repoPathRE.FindAllStringSubmatch(l, -1) {
			p := strings.TrimSuffix(strings.TrimSuffix(m[1], "..."), "/")
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				return fmt.Errorf("%s: names %s, which is not in the repository", b, p)
			}
		}
	}
	return nil
}

// checkCoveredBy: `covered-by DIR TestName` names a test that exists;
// `covered-by .ci/run` a block whose every command .ci/run runs.
func checkCoveredBy(root string, b block) error {
	if err := bashParse(b); err != nil {
		return err
	}
	if len(b.Args) == 1 && b.Args[0] == ".ci/run" {
		ci, err := os.ReadFile(filepath.Join(root, ".ci/run"))
		if err != nil {
			return err
		}
		for _, l := range shellLines(b.Body) {
			words := strings.Fields(strings.SplitN(l, " #", 2)[0])
			if len(words) > 2 && words[0] == "go" && words[1] == "test" && strings.Contains(string(ci), "go test -count=1 -timeout 20m ./...") {
				// A go test of some packages: .ci/run tests every package.
				if err := checkPaths(root, b); err != nil {
					return err
				}
				continue
			}
			found := false
			for _, cl := range strings.Split(string(ci), "\n") {
				all := true
				for _, w := range words {
					all = all && slices.Contains(strings.Fields(cl), w)
				}
				found = found || all
			}
			if !found {
				return fmt.Errorf("%s: covered by .ci/run, but no line of .ci/run runs %q", b, l)
			}
		}
		return nil
	}
	if len(b.Args) != 2 {
		return fmt.Errorf("%s: covered-by wants a package directory and a test name, or .ci/run", b)
	}
	files, err := filepath.Glob(filepath.Join(root, b.Args[0], "*_test.go"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("%s: covered-by %s: no test files there", b, b.Args[0])
	}
	want := "func " + b.Args[1] + "("
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err == nil && bytes.Contains(src, []byte(want)) {
			return checkPaths(root, b)
		}
	}
	return fmt.Errorf("%s: covered-by %s %s: no such test", b, b.Args[0], b.Args[1])
}

// enclaveBin is sigil-enclave, started in every session as the deployment
// guide's enclave VM (10.20.0.10:2000, local KMS stand-in).
var enclaveBin string

// sessionTimeout bounds one file's session.
const sessionTimeout = 8 * time.Minute

// runSession runs a file's runnable blocks in one bash session in a copy
// of the repository (see the package comment).
func runSession(t *testing.T, root string, blocks []block) error {
	for _, b := range blocks {
		if err := bashParse(b); err != nil {
			return err
		}
	}
	isolate := os.Geteuid() == 0
	if !isolate {
		if os.Getenv("CI") != "" {
			return fmt.Errorf("the documentation's sessions run as root (private network and mount namespaces); CI runs them as root")
		}
		t.Skip("the documentation's sessions need root (private network and mount namespaces for fixed ports and system paths); CI runs them")
	}
	dir := t.TempDir()
	sandbox := filepath.Join(dir, "repo")
	if err := copyRepo(root, sandbox); err != nil {
		return err
	}
	work := filepath.Join(dir, "doctest")
	stubDir := filepath.Join(work, "stubs")
	if err := os.MkdirAll(stubDir, 0o755); err != nil {
		return err
	}
	for name, src := range stubs {
		if err := os.WriteFile(filepath.Join(stubDir, name), []byte(src), 0o755); err != nil {
			return err
		}
	}
	var driver strings.Builder
	driver.WriteString(sessionPrelude)
	for i, b := range blocks {
		path := filepath.Join(work, fmt.Sprintf("block-%02d.sh", i))
		if err := os.WriteFile(path, []byte(b.Body), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&driver, "echo '@@block %d %s'\n", i, b)
		switch b.Directive {
		case "run":
			fmt.Fprintf(&driver, "source %q\n", path)
		case "cloud", "system":
			fmt.Fprintf(&driver, "PATH=\"$DOCTEST_STUBS:$DOCTEST_REALPATH\"; source %q; PATH=\"$DOCTEST_REALPATH\"\n", path)
		case "daemon":
			if len(b.Args) < 1 || len(b.Args) > 2 || (len(b.Args) == 2 && b.Args[1] != "stop") {
				return fmt.Errorf("%s: daemon wants the URL that answers once it is up, then optionally stop", b)
			}
			stop := 0
			if len(b.Args) == 2 {
				stop = 1
			}
			fmt.Fprintf(&driver, "doctest_daemon %q %q %d %d\n", path, b.Args[0], i, stop)
		}
		fmt.Fprintf(&driver, "echo '@@ok %d'\n", i)
	}
	driver.WriteString("echo '@@done'\n")
	driverPath := filepath.Join(work, "driver.sh")
	if err := os.WriteFile(driverPath, []byte(driver.String()), 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(work, "session.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()

	ctx, cancel := context.WithTimeout(context.Background(), sessionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--propagation", "private", "bash", driverPath)
	cmd.Dir = sandbox
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(),
		"DOCTEST_DIR="+work,
		"DOCTEST_STUBS="+stubDir,
		"DOCTEST_REALPATH="+os.Getenv("PATH"),
		"DOCTEST_SANDBOX="+sandbox,
		"DOCTEST_ENCLAVE="+enclaveBin,
		"GOPROXY=off",
		"GOFLAGS=-buildvcs=false",
	)
	// HOME moves into the session: keep Go's caches where they are.
	for _, v := range []string{"GOPATH", "GOMODCACHE", "GOCACHE"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			return fmt.Errorf("go env %s: %v", v, err)
		}
		cmd.Env = append(cmd.Env, v+"="+strings.TrimSpace(string(out)))
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("unshare: %v", err)
	}
	runErr := cmd.Wait()
	// The session's daemons are in its process group.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	out, _ := os.ReadFile(logPath)
	if runErr == nil && bytes.HasSuffix(bytes.TrimSpace(out), []byte("@@done")) {
		t.Logf("%d blocks ran", len(blocks))
		return nil
	}
	return fmt.Errorf("%s\n--- session output (the last @@block is the one that failed):\n%s", describeFailure(blocks, string(out), runErr), tail(string(out), 120))
}

// describeFailure names the block the session stopped in.
func describeFailure(blocks []block, out string, err error) string {
	last := -1
	for _, l := range strings.Split(out, "\n") {
		var i int
		if n, _ := fmt.Sscanf(l, "@@block %d", &i); n == 1 {
			last = i
		}
	}
	if last < 0 || last >= len(blocks) {
		return fmt.Sprintf("the session failed before its first block: %v", err)
	}
	return fmt.Sprintf("the block at %s failed (%v):\n%s", blocks[last], err, blocks[last].Body)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sessionPrelude sets a session up inside its namespaces: loopback up, the
// guide's enclave address on it, overlays over /etc, /usr/local and /var/lib
// (writes land in the session's temporary directory), HOME in the session.
const sessionPrelude = `set -euo pipefail
ip link set lo up
ip addr add 10.20.0.10/32 dev lo
for d in /etc /usr/local /var/lib; do
  n=$(echo "$d" | tr / _)
  mkdir -p "$DOCTEST_DIR/overlay/$n/upper" "$DOCTEST_DIR/overlay/$n/work"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$DOCTEST_DIR/overlay/$n/upper,workdir=$DOCTEST_DIR/overlay/$n/work" "$d"
done
export HOME="$DOCTEST_DIR/home"
mkdir -p "$HOME"
# The deployment guide's enclave VM: sigil-enclave on 10.20.0.10:2000 with
# the local KMS stand-in (the guide's own commands start the daemon side).
if [ -n "${DOCTEST_ENCLAVE:-}" ]; then
  "$DOCTEST_ENCLAVE" --listen 10.20.0.10:2000 --kms local --kms-key-file "$DOCTEST_DIR/kms.key" > "$DOCTEST_DIR/enclave-vm.log" 2>&1 &
fi
export PATH="$DOCTEST_REALPATH"
# doctest_daemon BLOCK URL N STOP: runs BLOCK in the background (its own
# process group) and waits until URL answers (at most 3 minutes: go run
# compiles first); with STOP=1 it then stops it (SIGINT, as Ctrl-C) and
# waits for it to end.
doctest_daemon() {
  setsid bash -c 'set -euo pipefail; source "$1"' _ "$1" > "$DOCTEST_DIR/daemon-$3.log" 2>&1 &
  local pid=$! i
  for i in $(seq 900); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then
      cat "$DOCTEST_DIR/daemon-$3.log"
      if [ "$4" = 1 ]; then
        kill -INT -- "-$pid"
        for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
        echo "the daemon did not stop within 30 s of SIGINT"; return 1
      fi
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "the daemon block ended before $2 answered; its output:"; cat "$DOCTEST_DIR/daemon-$3.log"; return 1; }
    sleep 0.2
  done
  echo "the daemon block never answered $2; its output:"
  cat "$DOCTEST_DIR/daemon-$3.log"
  return 1
}
`

// copyRepo copies the repository's tracked files (git ls-files) to dst, and
// links the npm tools installed under tools/ (not tracked: .ci/run and the
// tests install them).
func copyRepo(root, dst string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f == "" {
			continue
		}
		src := filepath.Join(root, f)
		fi, err := os.Lstat(src)
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree
			}
			return err
		}
		d := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, d); err != nil {
				return err
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(d, b, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	for _, tool := range []string{"dynalite", "taquito"} {
		nm := filepath.Join(root, "tools", tool, "node_modules")
		if _, err := os.Stat(nm); err == nil {
			if err := os.Symlink(nm, filepath.Join(dst, "tools", tool, "node_modules")); err != nil {
				return err
			}
		}
	}
	return nil
}
