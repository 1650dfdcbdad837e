// Package image tests the two images. The daemon's (daemon_test.go):
// deploy/sigil/build-image.sh builds it, and the daemon in it answers. The
// Confidential Space workload image of sigil-enclave: deploy/enclave/build-image.sh
// (what `task image:enclave` runs) builds it with buildah into a private store, twice, and the test
// checks that the digest is the same both times (a reproducible build), that
// the image is the one static binary with the configuration and launch
// policy the deployment guide relies on, that --version carries the
// checkout's revision, and that its entrypoint answers --help under `buildah run --isolation chroot` (no container runtime can
// run here). The attested channel's image (build-image.sh --attested,
// Containerfile.attested) is built into the same output directory: the same
// binary, another digest, the entrypoint with --attested and the launch
// policy allowing SIGIL_ENCLAVE_CLIENT_PINS and nothing else, and its
// entrypoint refuses to start without that variable. buildah is a Debian
// package that .ci/run installs; without it the test fails in CI and is
// skipped elsewhere.
package image

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// buildah runs buildah with the private store's flags.
type buildah struct {
	t       *testing.T
	storage []string
}

func (b *buildah) run(args ...string) (string, error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "buildah", append(append([]string(nil), b.storage...), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (b *buildah) must(args ...string) string {
	b.t.Helper()
	out, err := b.run(args...)
	if err != nil {
		b.t.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var digestRE = regexp.MustCompile(`(?m)^digest: (sha256:[0-9a-f]{64})$`)

func TestEnclaveImage(t *testing.T) {
	harness.SkipIfShort(t)
	if _, err := exec.LookPath("buildah"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("buildah is not installed (.ci/run installs the Debian package): %v", err)
		}
		t.Skip("buildah is not installed (apt-get install buildah); the CI environment variable is not set, so skipping")
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// A private buildah store, removed with the test's files.
	dir := t.TempDir()
	storage := []string{"--storage-driver", "vfs", "--root", filepath.Join(dir, "store"), "--runroot", filepath.Join(dir, "run")}
	b := &buildah{t: t, storage: storage}
	const image = "localhost/sigil-enclave:test"
	const attestedImage = "localhost/sigil-enclave-attested:test"

	build := func(out string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		name, img := "sigil-enclave", image
		if len(args) > 0 {
			name, img = "sigil-enclave-attested", attestedImage
		}
		cmd := exec.CommandContext(ctx, "bash", append(append([]string{filepath.Join(root, "deploy/enclave/build-image.sh")}, args...), out)...)
		cmd.Env = append(os.Environ(), "SIGIL_IMAGE="+img, "BUILDAH_STORAGE="+strings.Join(storage, " "))
		log, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build-image.sh: %v\n%s", err, log)
		}
		m := digestRE.FindStringSubmatch(string(log))
		if m == nil {
			t.Fatalf("build-image.sh printed no digest:\n%s", log)
		}
		file, err := os.ReadFile(filepath.Join(out, name+".digest"))
		if err != nil || strings.TrimSpace(string(file)) != m[1] {
			t.Fatalf("%s.digest holds %q (%v), the script printed %s", name, file, err, m[1])
		}
		return m[1]
	}
	start := time.Now()
	d1 := build(filepath.Join(dir, "out1"))
	t.Logf("image built in %v, digest %s", time.Since(start).Round(time.Millisecond), d1)
	d2 := build(filepath.Join(dir, "out2"))
	if d1 != d2 {
		t.Errorf("two builds of the same source gave digests %s and %s: the image is not reproducible", d1, d2)
	}

	// The binary is static (no ELF interpreter): it runs FROM scratch.
	assertStatic(t, filepath.Join(dir, "out1", "context", "sigil-enclave"))

	// The image's configuration.
	info := b.inspect(image)
	cfg := info.OCIv1.Config
	if cfg.User == "" || cfg.User == "0" || strings.HasPrefix(cfg.User, "0:") || cfg.User == "root" {
		t.Errorf("the image runs as %q, want an unprivileged user", cfg.User)
	}
	if _, ok := cfg.ExposedPorts["2000/tcp"]; !ok {
		t.Errorf("the image does not expose 2000/tcp: %v", cfg.ExposedPorts)
	}
	if got := cfg.Labels["tee.launch_policy.log_redirect"]; got != "always" {
		t.Errorf("launch policy log_redirect = %q, want always", got)
	}
	for _, l := range []string{"tee.launch_policy.allow_cmd_override", "tee.launch_policy.allow_env_override", "tee.launch_policy.allow_mount_destinations"} {
		if v, ok := cfg.Labels[l]; ok {
			t.Errorf("the image sets %s=%q: the operator could change the workload under the same digest", l, v)
		}
	}
	want := []string{"/sigil-enclave", "--listen", ":2000", "--kms", "gcp", "--log-level", "info"}
	if strings.Join(cfg.Entrypoint, "\x00") != strings.Join(want, "\x00") || len(cfg.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want %q and no cmd", cfg.Entrypoint, cfg.Cmd, want)
	}
	if len(info.OCIv1.RootFS.DiffIDs) != 1 {
		t.Errorf("the image has %d layers, want the one with the binary", len(info.OCIv1.RootFS.DiffIDs))
	}

	// The entrypoint runs: --help describes the gcp mode and its seams.
	ctr := strings.TrimSpace(b.must("from", "--quiet", "--pull-never", image))
	defer b.run("rm", ctr)
	out, err := b.run(append([]string{"run", "--isolation", "chroot", ctr, "--"}, append(cfg.Entrypoint, "--help")...)...)
	if err != nil {
		t.Fatalf("the entrypoint with --help failed under buildah run: %v\n%s", err, out)
	}
	for _, s := range []string{"--kms gcp", "Confidential Space", "-gcp-kms-endpoint", "-gcp-sts-url", "-gcp-token-file", "/run/container_launcher/attestation_verifier_claims_token"} {
		if !strings.Contains(out, s) {
			t.Errorf("--help in the image lacks %q:\n%s", s, out)
		}
	}
	// --version carries the checkout's revision.
	version := b.must("run", "--isolation", "chroot", ctr, "--", "/sigil-enclave", "--version")
	checkVersion(t, version, headRevision(t, root))

	// And a bad flag fails: the binary really parsed the arguments.
	if out, err := b.run(append([]string{"run", "--isolation", "chroot", ctr, "--"}, append(cfg.Entrypoint, "--kms", "nonsense")...)...); err == nil {
		t.Errorf("the entrypoint accepted --kms nonsense:\n%s", out)
	}

	checkAttestedImage(t, b, build, filepath.Join(dir, "out1"), d1, attestedImage)
}

// imageInfo is what the tests read of buildah inspect.
type imageInfo struct {
	OCIv1 struct {
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
}

func (b *buildah) inspect(image string) imageInfo {
	b.t.Helper()
	var info imageInfo
	if err := json.Unmarshal([]byte(b.must("inspect", "--type", "image", image)), &info); err != nil {
		b.t.Fatalf("buildah inspect %s: %v", image, err)
	}
	return info
}

// checkAttestedImage builds the attested channel's image into out, next to
// the plain image (digest plain), and checks it: the same binary, another
// digest, the plain image's entrypoint with --attested, the launch policy
// allowing SIGIL_ENCLAVE_CLIENT_PINS and nothing else, and an entrypoint
// that refuses to start without that variable, naming it.
func checkAttestedImage(t *testing.T, b *buildah, build func(string, ...string) string, out, plain, image string) {
	t.Helper()
	d := build(out, "--attested")
	if d == plain {
		t.Errorf("the attested image has the plain image's digest %s", d)
	}
	if _, err := os.Stat(filepath.Join(out, "sigil-enclave.digest")); err != nil {
		t.Errorf("building the attested image removed the plain image's digest file: %v", err)
	}
	p1, err1 := os.ReadFile(filepath.Join(out, "context", "sigil-enclave"))
	p2, err2 := os.ReadFile(filepath.Join(out, "context-attested", "sigil-enclave"))
	if err1 != nil || err2 != nil || !bytes.Equal(p1, p2) {
		t.Errorf("the two images do not hold the same binary (%v, %v)", err1, err2)
	}
	info := b.inspect(image)
	cfg := info.OCIv1.Config
	want := []string{"/sigil-enclave", "--listen", ":2000", "--kms", "gcp", "--log-level", "info", "--attested"}
	if strings.Join(cfg.Entrypoint, "\x00") != strings.Join(want, "\x00") || len(cfg.Cmd) != 0 {
		t.Errorf("attested entrypoint %q cmd %q, want %q and no cmd", cfg.Entrypoint, cfg.Cmd, want)
	}
	if got := cfg.Labels["tee.launch_policy.allow_env_override"]; got != "SIGIL_ENCLAVE_CLIENT_PINS" {
		t.Errorf("attested launch policy allow_env_override = %q, want SIGIL_ENCLAVE_CLIENT_PINS alone", got)
	}
	if got := cfg.Labels["tee.launch_policy.log_redirect"]; got != "always" {
		t.Errorf("attested launch policy log_redirect = %q, want always", got)
	}
	for _, l := range []string{"tee.launch_policy.allow_cmd_override", "tee.launch_policy.allow_mount_destinations"} {
		if v, ok := cfg.Labels[l]; ok {
			t.Errorf("the attested image sets %s=%q: the operator could change the workload under the same digest", l, v)
		}
	}
	if cfg.User == "" || cfg.User == "0" || strings.HasPrefix(cfg.User, "0:") || cfg.User == "root" {
		t.Errorf("the attested image runs as %q, want an unprivileged user", cfg.User)
	}
	if _, ok := cfg.ExposedPorts["2000/tcp"]; !ok {
		t.Errorf("the attested image does not expose 2000/tcp: %v", cfg.ExposedPorts)
	}
	if len(info.OCIv1.RootFS.DiffIDs) != 1 {
		t.Errorf("the attested image has %d layers, want the one with the binary", len(info.OCIv1.RootFS.DiffIDs))
	}
	ctr := strings.TrimSpace(b.must("from", "--quiet", "--pull-never", image))
	defer b.run("rm", ctr)
	// The entrypoint as the launcher runs it, without the pin list: it
	// must not start (and must not serve the plain protocol instead).
	out2, err := b.run(append([]string{"run", "--isolation", "chroot", ctr, "--"}, cfg.Entrypoint...)...)
	if err == nil || !strings.Contains(out2, "SIGIL_ENCLAVE_CLIENT_PINS lists no client pin") {
		t.Errorf("the attested entrypoint without SIGIL_ENCLAVE_CLIENT_PINS: %v\n%s", err, out2)
	}
	help := b.must(append([]string{"run", "--isolation", "chroot", ctr, "--"}, append(cfg.Entrypoint, "--help")...)...)
	for _, s := range []string{"--attested", "--launcher-socket", "/run/container_launcher/teeserver.sock", "SIGIL_ENCLAVE_CLIENT_PINS"} {
		if !strings.Contains(help, s) {
			t.Errorf("--help in the attested image lacks %q", s)
		}
	}
}

// assertStatic fails t unless the ELF binary at path is statically linked
// (no interpreter), as an image FROM scratch needs.
func assertStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s in the image is dynamically linked", filepath.Base(path))
		}
	}
}
