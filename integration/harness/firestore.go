package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Environment variables that steer the emulator choice.
const (
	// EnvEmulatorMode forces "docker" or "local"; empty means automatic
	// (Docker when an engine answers, the local Google Cloud SDK otherwise).
	EnvEmulatorMode = "SIGIL_FIRESTORE_EMULATOR"
	// EnvEmulatorJar points at cloud-firestore-emulator.jar when it is not
	// under a standard Google Cloud SDK location.
	EnvEmulatorJar = "SIGIL_FIRESTORE_EMULATOR_JAR"
	// EmulatorImage is the container image used with Docker.
	EmulatorImage = "gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators"
)

const emulatorMainClass = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"

// Firestore is a running Firestore emulator. Projects are isolated by the
// emulator, so tests sharing one emulator stay apart by using NewProject.
// Stop stops it and Restart starts it again (on the same port when run
// locally); either way its data is lost.
type Firestore struct {
	emulator
	mode     string // "local" or "docker"
	launch   []string
	host     string // 127.0.0.1:port; guarded by mu
	port     int
	projects atomic.Int64
}

var sharedFirestore shared[*Firestore]

// StartFirestore returns the Firestore emulator shared by the whole test
// binary, starting it on first use. It is stopped when Main ends. Do not
// Stop or Restart it (other tests use it); outage tests take their own with
// StartPrivateFirestore. If no emulator can be run (no Docker engine, no
// Java with the Google Cloud SDK emulator), the test fails when the CI
// environment variable is set and is skipped otherwise.
func StartFirestore(t testing.TB) *Firestore {
	t.Helper()
	return startShared(t, &sharedFirestore, "Firestore emulator", startFirestore)
}

// StartPrivateFirestore starts an emulator for t alone (for tests that stop
// or restart it); it is stopped at t's cleanup.
func StartPrivateFirestore(t testing.TB) *Firestore {
	t.Helper()
	return startPrivate(t, "Firestore emulator", startFirestore)
}

func (f *Firestore) base() *emulator { return &f.emulator }

func (f *Firestore) describe() string {
	return fmt.Sprintf("Firestore emulator (%s) at %s", f.mode, f.Host())
}

func startFirestore() (*Firestore, error) {
	f := &Firestore{}
	f.emulator = emulator{name: "Firestore emulator", start: f.start}
	mode := os.Getenv(EnvEmulatorMode)
	switch mode {
	case "docker":
		if err := dockerReachable(); err != nil {
			return nil, fmt.Errorf("%s=docker but %v", EnvEmulatorMode, err)
		}
	case "local":
	case "":
		mode = "local"
		if dockerReachable() == nil {
			mode = "docker"
		}
	default:
		return nil, fmt.Errorf("%s=%q: want docker, local or empty", EnvEmulatorMode, mode)
	}
	f.mode = mode
	if mode == "local" {
		launch, err := localLauncher()
		if err != nil {
			return nil, err
		}
		f.launch = launch
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		f.port = port
	}
	repick := func() error {
		port, err := freePort()
		f.port = port
		return err
	}
	if mode != "local" {
		repick = func() error { return errors.New("no port to pick again") }
	}
	if err := f.runFresh(repick); err != nil {
		return nil, err
	}
	return f, nil
}

// localLauncher finds how to run the emulator from the Google Cloud SDK:
// java directly on the emulator jar (about twice as fast to start as
// gcloud), or gcloud when the jar cannot be located.
func localLauncher() ([]string, error) {
	jar := findEmulatorJar()
	if jar != "" {
		java := os.Getenv("JAVA")
		if java == "" {
			p, err := exec.LookPath("java")
			if err != nil {
				return nil, &errMissing{fmt.Sprintf("found the emulator jar %s but no java on PATH (Java 17+ is needed) and no Docker engine", jar)}
			}
			java = p
		}
		return []string{java, "-Duser.language=en", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", jar, emulatorMainClass}, nil
	}
	if gcloud, err := exec.LookPath("gcloud"); err == nil {
		return []string{gcloud, "emulators", "firestore", "start"}, nil
	}
	return nil, &errMissing{"no Docker engine reachable, no gcloud on PATH and no cloud-firestore-emulator.jar found (install the Google Cloud SDK with the cloud-firestore-emulator component and Java, set " + EnvEmulatorJar + ", or run a Docker engine)"}
}

func findEmulatorJar() string {
	const rel = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
	var candidates []string
	if p := os.Getenv(EnvEmulatorJar); p != "" {
		candidates = append(candidates, p)
	}
	if root := os.Getenv("CLOUDSDK_ROOT_DIR"); root != "" {
		candidates = append(candidates, filepath.Join(root, rel))
	}
	if gcloud, err := exec.LookPath("gcloud"); err == nil {
		if real, err := filepath.EvalSymlinks(gcloud); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(filepath.Dir(real)), rel))
		}
	}
	home, _ := os.UserHomeDir()
	candidates = append(candidates,
		"/usr/lib/google-cloud-sdk/"+rel,
		"/usr/share/google-cloud-sdk/"+rel,
		"/opt/google-cloud-sdk/"+rel,
		"/google-cloud-sdk/"+rel,
		filepath.Join(home, "google-cloud-sdk", rel),
	)
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	return ""
}

// dockerReachable pings the Docker engine with a short timeout.
func dockerReachable() error {
	var dial func(ctx context.Context) (net.Conn, error)
	hostEnv := os.Getenv("DOCKER_HOST")
	var d net.Dialer
	switch {
	case strings.HasPrefix(hostEnv, "unix://"):
		sock := strings.TrimPrefix(hostEnv, "unix://")
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) }
	case strings.HasPrefix(hostEnv, "tcp://"):
		u, err := url.Parse(hostEnv)
		if err != nil {
			return fmt.Errorf("DOCKER_HOST %q: %v", hostEnv, err)
		}
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", u.Host) }
	case hostEnv != "":
		return fmt.Errorf("DOCKER_HOST %q is not unix:// or tcp://", hostEnv)
	default:
		home, _ := os.UserHomeDir()
		socks := []string{"/var/run/docker.sock", filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "docker.sock"), filepath.Join(home, ".docker/run/docker.sock")}
		for _, s := range socks {
			if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
				sock := s
				dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) }
				break
			}
		}
		if dial == nil {
			return errors.New("no Docker engine socket found")
		}
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }},
	}
	resp, err := client.Get("http://docker/_ping")
	if err != nil {
		return fmt.Errorf("Docker engine not reachable: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Docker engine ping: HTTP %d", resp.StatusCode)
	}
	return nil
}

// start launches the emulator (f.mu held or f not yet shared).
func (f *Firestore) start() error {
	if f.mode == "docker" {
		if err := f.startDocker(); err != nil {
			return err
		}
	} else {
		host := "127.0.0.1:" + strconv.Itoa(f.port)
		args := append([]string(nil), f.launch[1:]...)
		if filepath.Base(f.launch[0]) == "gcloud" {
			args = append(args, "--host-port="+host)
		} else {
			args = append(args, "--host=127.0.0.1", "--port="+strconv.Itoa(f.port))
		}
		p, err := startProcess(ProcessOptions{
			Name:      "firestore-emulator",
			Binary:    f.launch[0],
			Args:      args,
			Probe:     func() bool { return emulatorOK(host) },
			Timeout:   90 * time.Second,
			StopGrace: 5 * time.Second,
		})
		if err != nil {
			return err
		}
		f.proc, f.host = p, host
	}
	return nil
}

func (f *Firestore) startDocker() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, EmulatorImage,
		testcontainers.WithExposedPorts("8080/tcp"),
		testcontainers.WithCmd("gcloud", "emulators", "firestore", "start", "--host-port=0.0.0.0:8080"),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/").WithPort("8080/tcp").
			WithResponseMatcher(func(body io.Reader) bool {
				b, _ := io.ReadAll(body)
				return strings.HasPrefix(string(b), "Ok")
			}).WithStartupTimeout(3*time.Minute)),
	)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.Background())
		}
		return fmt.Errorf("start the emulator container %s: %w", EmulatorImage, err)
	}
	host, err := ctr.PortEndpoint(ctx, "8080/tcp", "")
	if err != nil {
		_ = ctr.Terminate(context.Background())
		return fmt.Errorf("emulator container port: %w", err)
	}
	f.ctr, f.host = ctr, host
	return nil
}

// emulatorOK reports whether the emulator at host answers "Ok".
func emulatorOK(host string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + host + "/")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(string(b), "Ok")
}

// Host returns the emulator's host:port. With Docker it may change across
// Restart.
func (f *Firestore) Host() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.host
}

// Env returns the environment a process needs to use the emulator
// (FIRESTORE_EMULATOR_HOST).
func (f *Firestore) Env() []string { return []string{"FIRESTORE_EMULATOR_HOST=" + f.Host()} }

// SetEnv points FIRESTORE_EMULATOR_HOST of the test process at the emulator
// for the duration of t (so t cannot be parallel).
func (f *Firestore) SetEnv(t testing.TB) { t.Setenv("FIRESTORE_EMULATOR_HOST", f.Host()) }

// Mode returns "local" or "docker".
func (f *Firestore) Mode() string { return f.mode }

// NewProject returns a project id no other caller got; the emulator keeps
// each project's data apart.
func (f *Firestore) NewProject(t testing.TB) string { return uniqueName(&f.projects) }
