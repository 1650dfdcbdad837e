package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// EnvDynalite points at dynalite's cli.js (run with node) or at a dynalite
// executable when it is not installed under tools/dynalite.
const EnvDynalite = "SIGIL_DYNALITE"

// Fake credentials and region used against dynalite (it checks that
// requests are signed, not by whom).
const (
	DynaliteRegion    = "us-east-1"
	DynaliteAccessKey = "AKIDSIGILTEST"
	DynaliteSecretKey = "sigil-test-secret"
)

// Dynalite is a running dynalite (an implementation of the DynamoDB API).
// The shared one keeps its data in memory; a private one keeps it on disk,
// so that it survives Stop and Restart (on the same port) as DynamoDB's
// survives an outage.
// Tests sharing one stay apart by using a table each (NewTable).
type Dynalite struct {
	emulator
	launch []string
	port   int
	dir    string // LevelDB directory; "" for memory
	tables atomic.Int64
}

var sharedDynalite shared[*Dynalite]

// StartDynalite returns the dynalite shared by the whole test binary,
// starting it on first use; it is stopped when Main ends. Do not Stop or
// Restart it; outage tests take their own with StartPrivateDynalite. If
// dynalite is not installed (npm ci --prefix tools/dynalite) or node is
// missing, the test fails when the CI environment variable is set and is
// skipped otherwise. Under -short it is skipped.
func StartDynalite(t testing.TB) *Dynalite {
	t.Helper()
	return startShared(t, &sharedDynalite, "dynalite", func() (*Dynalite, error) { return startDynalite(false) })
}

// StartPrivateDynalite starts a dynalite for t alone (for tests that stop
// or restart it), keeping its data on disk across Stop and Restart; it is
// stopped at t's cleanup.
func StartPrivateDynalite(t testing.TB) *Dynalite {
	t.Helper()
	return startPrivate(t, "dynalite", func() (*Dynalite, error) { return startDynalite(true) })
}

func (d *Dynalite) base() *emulator { return &d.emulator }

func (d *Dynalite) describe() string { return "dynalite at " + d.Endpoint() }

// dynaliteLauncher finds how to run dynalite: $SIGIL_DYNALITE, then the
// project-local install under tools/dynalite, then dynalite on PATH.
func dynaliteLauncher() ([]string, error) {
	withNode := func(script string) ([]string, error) {
		node, err := exec.LookPath("node")
		if err != nil {
			return nil, &errMissing{fmt.Sprintf("found dynalite at %s but no node on PATH (Node.js 20+ is needed)", script)}
		}
		return []string{node, script}, nil
	}
	if p := os.Getenv(EnvDynalite); p != "" {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s=%s: %v", EnvDynalite, p, err)
		}
		if strings.HasSuffix(p, ".js") {
			return withNode(p)
		}
		return []string{p}, nil
	}
	if root, err := ModuleRoot(); err == nil {
		dir := filepath.Join(root, "tools", "dynalite")
		script := filepath.Join(dir, "node_modules", "dynalite", "cli.js")
		if _, err := os.Stat(script); err != nil {
			// Not installed yet: install it, as the Taquito oracle
			// installs itself on first use.
			if err := installDynalite(dir, script); err != nil {
				return nil, err
			}
		}
		if _, err := os.Stat(script); err == nil {
			return withNode(script)
		}
	}
	if p, err := exec.LookPath("dynalite"); err == nil {
		return []string{p}, nil
	}
	return nil, &errMissing{"dynalite is not installed: run `npm ci --prefix tools/dynalite` (or set " + EnvDynalite + ")"}
}

func startDynalite(onDisk bool) (*Dynalite, error) {
	launch, err := dynaliteLauncher()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &Dynalite{launch: launch, port: port}
	d.emulator = emulator{name: "dynalite", start: d.start}
	if onDisk {
		if d.dir, err = tempRoot("sigil-dynalite-"); err != nil {
			return nil, err
		}
	}
	repick := func() error {
		port, err := freePort()
		d.port = port
		return err
	}
	if err := d.runFresh(repick); err != nil {
		return nil, err
	}
	return d, nil
}

// start launches dynalite (d.mu held or d not yet shared). Tables become
// ACTIVE 50 ms after their creation, so that clients do wait for them.
func (d *Dynalite) start() error {
	args := append([]string(nil), d.launch[1:]...)
	args = append(args, "--host", "127.0.0.1", "--port", strconv.Itoa(d.port),
		"--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50")
	if d.dir != "" {
		args = append(args, "--path", d.dir)
	}
	client := d.client()
	p, err := startProcess(ProcessOptions{
		Name:   "dynalite",
		Binary: d.launch[0],
		Args:   args,
		Ready:  func(line string) bool { return strings.Contains(line, "Dynalite listening") },
		Probe: func() bool { // a real API call
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{})
			return err == nil
		},
		Timeout:   60 * time.Second,
		StopGrace: 3 * time.Second,
	})
	if err != nil {
		return err
	}
	d.proc = p
	return nil
}

// Endpoint returns dynalite's URL (http://127.0.0.1:port).
func (d *Dynalite) Endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(d.port) }

// Env returns the environment a process needs to reach dynalite through the
// AWS SDK's standard variables: the DynamoDB endpoint, fake static
// credentials and a region (and no EC2 metadata look-ups).
func (d *Dynalite) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_DYNAMODB=" + d.Endpoint(),
		"AWS_ACCESS_KEY_ID=" + DynaliteAccessKey,
		"AWS_SECRET_ACCESS_KEY=" + DynaliteSecretKey,
		"AWS_REGION=" + DynaliteRegion,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets Env in the test process for the duration of t (so t cannot
// be parallel).
func (d *Dynalite) SetEnv(t testing.TB) {
	for _, kv := range d.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Client returns a DynamoDB client of dynalite, for tests that read or
// write items directly.
func (d *Dynalite) Client() *dynamodb.Client { return d.client() }

func (d *Dynalite) client() *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       DynaliteRegion,
		BaseEndpoint: aws.String(d.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(DynaliteAccessKey, DynaliteSecretKey, ""),
		Retryer:      aws.NopRetryer{},
	})
}

// NewTable returns a table name no other caller got.
func (d *Dynalite) NewTable(t testing.TB) string { return uniqueName(&d.tables) }

// Stop stops dynalite (a shared one loses its data, a private one keeps
// it). Stopping a stopped one does nothing.
func (d *Dynalite) Stop() { _ = d.emulator.Stop() }

// installDynalite runs `npm ci` in tools/dynalite (its lock file pins
// dynalite) when script is missing, under an exclusive file lock so that
// concurrent test processes install once. Without npm it reports dynalite
// as missing (the test then fails in CI and is skipped elsewhere).
func installDynalite(dir, script string) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return &errMissing{"dynalite is not installed and npm is not on PATH: install Node.js 20+, then `npm ci --prefix tools/dynalite`"}
	}
	if _, err := os.Stat(filepath.Join(dir, "package-lock.json")); err != nil {
		return &errMissing{"dynalite is not installed and " + filepath.Join(dir, "package-lock.json") + " is missing"}
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "sigil-dynalite-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(script); err == nil {
		return nil // another process installed it meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return &errMissing{fmt.Sprintf("installing dynalite (npm ci in %s) failed: %v\n%s", dir, err, out)}
	}
	return nil
}
