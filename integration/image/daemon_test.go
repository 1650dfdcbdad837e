package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/integration/harness"
)

// headRevision returns the git revision of the module's checkout, with
// "-dirty" when tracked files are modified (as the builds stamp it).
func headRevision(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the image tests run in a git checkout): %v", err)
	}
	rev := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(st))) > 0 {
		rev += "-dirty"
	}
	return rev
}

// checkVersion checks a `version` output: the revision of the checkout,
// a build time and the Go version.
func checkVersion(t *testing.T, out, rev string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^revision: +` + regexp.QuoteMeta(rev) + `$`).MatchString(out) {
		t.Errorf("version output does not carry the revision %s:\n%s", rev, out)
	}
	if !regexp.MustCompile(`(?m)^build time: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(out) {
		t.Errorf("version output has no build time:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^go: +go1\.`).MatchString(out) {
		t.Errorf("version output has no Go version:\n%s", out)
	}
}

// TestDaemonImage builds the daemon's image with deploy/sigil/build-image.sh
// (what `task image` runs) into a private store, checks its configuration
// (non-root, ports 6732 and 9583, the state volume), that `version` in the
// image carries the checkout's revision, and that the daemon in the image
// answers: `serve --dev` under `buildah run --isolation chroot` reports
// ready on /healthz, exports sigil_build_info and serves a key.
func TestDaemonImage(t *testing.T) {
	harness.SkipIfShort(t)
	harness.Tool(t, "buildah", "Debian: apt-get install buildah")
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rev := headRevision(t, root)
	dir := t.TempDir()
	storage := []string{"--storage-driver", "vfs", "--root", filepath.Join(dir, "store"), "--runroot", filepath.Join(dir, "run")}
	b := &buildah{t: t, storage: storage}
	const image = "localhost/sigil:test"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "out")
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "deploy/sigil/build-image.sh"), out)
	cmd.Env = append(os.Environ(), "SIGIL_IMAGE="+image, "BUILDAH_STORAGE="+strings.Join(storage, " "))
	start := time.Now()
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/sigil/build-image.sh: %v\n%s", err, log)
	}
	m := digestRE.FindStringSubmatch(string(log))
	if m == nil {
		t.Fatalf("build-image.sh printed no digest:\n%s", log)
	}
	t.Logf("image built in %v, digest %s", time.Since(start).Round(time.Millisecond), m[1])
	if fi, err := os.Stat(filepath.Join(out, "sigil.oci.tar")); err != nil || fi.Size() < 1<<20 {
		t.Errorf("no OCI archive: %v", err)
	}

	assertStatic(t, filepath.Join(out, "sigil-context", "sigil"))

	var info struct {
		OCIv1 struct {
			Config struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				ExposedPorts map[string]struct{}
				Volumes      map[string]struct{}
			} `json:"config"`
		}
	}
	if err := json.Unmarshal([]byte(b.must("inspect", "--type", "image", image)), &info); err != nil {
		t.Fatalf("buildah inspect: %v", err)
	}
	cfg := info.OCIv1.Config
	if cfg.User != "65532:65532" {
		t.Errorf("the image runs as %q, want the unprivileged 65532:65532", cfg.User)
	}
	for _, p := range []string{"6732/tcp", "9583/tcp"} {
		if _, ok := cfg.ExposedPorts[p]; !ok {
			t.Errorf("the image does not expose %s: %v", p, cfg.ExposedPorts)
		}
	}
	if _, ok := cfg.Volumes["/var/lib/sigil"]; !ok || len(cfg.Volumes) != 1 {
		t.Errorf("volumes %v, want the one state volume /var/lib/sigil", cfg.Volumes)
	}
	if strings.Join(cfg.Entrypoint, " ") != "/sigil" || strings.Join(cfg.Cmd, " ") != "serve --config /etc/sigil/sigil.yaml --base-dir /var/lib/sigil" {
		t.Errorf("entrypoint %q cmd %q", cfg.Entrypoint, cfg.Cmd)
	}

	ctr := strings.TrimSpace(b.must("from", "--quiet", "--pull-never", image))
	defer b.run("rm", ctr)
	version := b.must("run", "--isolation", "chroot", ctr, "--", "/sigil", "version")
	checkVersion(t, version, rev)
	t.Logf("sigil version in the image:\n%s", version)

	// The daemon answers: serve --dev (embedded mock enclave) on free
	// loopback ports, with the configuration mounted as in production.
	cfgDir := filepath.Join(dir, "etc")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	apiPort, utilPort := harness.FreePort(t), harness.FreePort(t)
	if err := os.WriteFile(filepath.Join(cfgDir, "sigil.yaml"), []byte(fmt.Sprintf(
		"server:\n  address: 127.0.0.1:%d\n  utility_address: 127.0.0.1:%d\n", apiPort, utilPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	utility := fmt.Sprintf("http://127.0.0.1:%d", utilPort)
	keyRE := regexp.MustCompile(`ed25519 +(tz1\w+)`)
	p := harness.StartProcess(t, harness.ProcessOptions{
		Name:   "sigil-in-image",
		Binary: "buildah",
		Args: append(append([]string(nil), storage...), "run", "--isolation", "chroot", "--volume", cfgDir+":/etc/sigil:ro", ctr, "--",
			"/sigil", "serve", "--dev", "--config", "/etc/sigil/sigil.yaml", "--base-dir", "/var/lib/sigil"),
		Ready: func(line string) bool { return keyRE.MatchString(line) },
		Probe: func() bool {
			resp, err := http.Get(utility + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		},
		Timeout:   2 * time.Minute,
		StopGrace: 10 * time.Second,
	})
	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
		}
		return string(body)
	}
	metrics := get(utility + "/metrics")
	if !strings.Contains(metrics, `revision="`+rev+`"`) || !strings.Contains(metrics, "sigil_build_info{") {
		t.Errorf("/metrics of the daemon in the image has no sigil_build_info with revision %s", rev)
	}
	key := keyRE.FindStringSubmatch(p.Log())[1]
	if pk := get(fmt.Sprintf("http://127.0.0.1:%d/keys/%s", apiPort, key)); !strings.Contains(pk, `"public_key":"edpk`) {
		t.Errorf("GET /keys/%s: %s", key, pk)
	}
}
