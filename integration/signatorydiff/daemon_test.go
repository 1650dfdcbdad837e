package signatorydiff

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/sigil-signer/sigil/integration/harness"
)

// The two programs compared; index 0 is always Signatory, 1 Sigil.
var programs = [2]string{"signatory", "sigil"}

// daemon is one running (or refused) signer of a pair.
type daemon struct {
	program      string
	api, utility string
	baseDir      string
	proc         *harness.Process
	// refused says why the daemon did not start ("" when it did).
	refused string
	// tokens are the JWTs this daemon issued, by user.
	tokens map[string]string
}

// configValues are what differs between the two daemons' configuration
// files (rendered from one template): the listening addresses and the base
// directory. Everything else — vault, keys, policies, hook — is the same.
type configValues struct {
	BaseDir, Address, UtilityAddress string
}

// renderConfig renders a scenario's configuration template for one daemon.
func (e *env) renderConfig(tmpl string, v configValues) (string, error) {
	funcs := template.FuncMap{
		"pkh":   func(name string) string { return e.c.key(name).PKH },
		"pk":    func(name string) string { return e.c.key(name).PK },
		"chain": func(name string) string { return e.c.Chains[name] },
		"list": func(items ...string) string {
			b, _ := json.Marshal(items)
			return string(b)
		},
		// generic is the flow list of the operation kinds both programs
		// accept in allow.generic.
		"generic": func() string {
			b, _ := json.Marshal(e.genericKinds)
			return string(b)
		},
	}
	t, err := template.New("config").Funcs(funcs).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", err
	}
	data := map[string]string{
		"BaseDir": v.BaseDir, "Address": v.Address, "UtilityAddress": v.UtilityAddress,
		"Vault": e.vaultPath, "Hook": e.hook.url,
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return "", err
	}
	return out.String(), nil
}

// startDaemon renders the configuration for program and starts it on a
// fresh pair of loopback ports with baseDir (created by the caller or by
// the daemon). A daemon that refuses to start is returned with refused
// set; the test goes on.
func (e *env) startDaemon(t *testing.T, program, tmpl, baseDir string) *daemon {
	t.Helper()
	d := &daemon{program: program, baseDir: baseDir, tokens: map[string]string{}}
	api, util := harness.FreePort(t), harness.FreePort(t)
	d.api, d.utility = "http://127.0.0.1:"+strconv.Itoa(api), "http://127.0.0.1:"+strconv.Itoa(util)
	cfg, err := e.renderConfig(tmpl, configValues{
		BaseDir: baseDir, Address: "127.0.0.1:" + strconv.Itoa(api), UtilityAddress: "127.0.0.1:" + strconv.Itoa(util),
	})
	if err != nil {
		t.Fatalf("configuration template: %v", err)
	}
	cfgPath := filepath.Join(t.TempDir(), program+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := harness.ProcessOptions{
		Name:      program,
		Args:      []string{"-c", cfgPath, "serve"},
		Timeout:   30 * time.Second,
		StopGrace: 10 * time.Second,
	}
	switch program {
	case "signatory":
		// Signatory logs "listening" before it binds; it is ready when
		// /healthz answers 200 and the API port accepts connections.
		opts.Binary = e.bins.signatory
		opts.Probe = func() bool {
			resp, err := probeClient.Get(d.utility + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(api), time.Second)
			if err != nil {
				return false
			}
			c.Close()
			return resp.StatusCode == http.StatusOK
		}
	case "sigil":
		opts.Binary = e.bins.sigil
		opts.Ready = func(line string) bool { return strings.Contains(line, `msg="signer ready"`) }
	}
	p, err := harness.TryStartProcess(t, opts)
	d.proc = p
	if err != nil {
		d.refused = "refused"
		if p != nil && p.Exited() {
			d.refused = "refused: " + refusal(p.Log())
			t.Logf("%s refused the configuration: %s", program, d.refused)
		} else {
			t.Logf("%s did not start: %v", program, err)
		}
	}
	return d
}

var probeClient = &http.Client{Timeout: 2 * time.Second}

// refusal picks the line of a start-up log that says why the program
// stopped: the first error line (cobra's "Error: …", logrus level=error or
// level=fatal, slog level=ERROR), else the last line.
func refusal(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	pick := lines[len(lines)-1]
	for _, l := range lines {
		if strings.HasPrefix(l, "Error:") || strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") ||
			strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "sigil:") {
			pick = l
			break
		}
	}
	pick = strings.TrimSpace(pick)
	if len(pick) > 240 {
		pick = pick[:240] + "…"
	}
	return pick
}

// stop ends a daemon (SIGTERM, then SIGKILL after the grace period).
func (d *daemon) stop() {
	if d.proc != nil {
		d.proc.Stop()
	}
}

func (d *daemon) running() bool { return d.refused == "" && d.proc != nil && !d.proc.Exited() }

func (d *daemon) String() string { return fmt.Sprintf("%s (%s)", d.program, d.api) }
