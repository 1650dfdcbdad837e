// Package reload tests, on real processes (the daemon and the mock
// enclave), that a running signer applies a new configuration on SIGHUP
// and on POST /reload while it is under load: a key stored meanwhile is
// loaded into the enclave and served, a changed policy is in force from
// the reload on and not a request before, no request fails, broken
// configurations are refused with the running one still serving, reloads
// racing each other both complete, and POST /reload is authenticated as
// the signer API is.
package reload

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/ports"
)

func TestMain(m *testing.M) { harness.Main(m) }

// env is one test's enclave, key storage and configuration file.
type env struct {
	t        *testing.T
	dir      string
	cfgPath  string
	keysPath string
	kms      *localstandin.KMS
	st       *file.Store
	encPort  int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	harness.SkipIfShort(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, cfgPath: filepath.Join(dir, "sigil.yaml"), keysPath: filepath.Join(dir, "keys.json")}
	kmsPath := filepath.Join(dir, "kms.key")
	var err error
	e.kms, err = localstandin.New(kmsPath)
	require.NoError(t, err)
	e.st, err = file.New(e.keysPath)
	require.NoError(t, err)
	enc := harness.StartEnclave(t, harness.EnclaveOptions{KMSKeyFile: kmsPath})
	e.encPort = enc.Port
	return e
}

// render returns the configuration: the vault on the test's enclave,
// listeners on loopback with server (lines under `server:`), and rest.
func (e *env) render(server, rest string) string {
	return fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
%svaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: "%d"
      wip_provider_path: reload/wip
      encryption_key_path: reload/kms
      storage:
        driver: file
        config: %s
%s`, e.dir, server, e.encPort, e.keysPath, rest)
}

// write replaces the configuration file whole, by a rename.
func (e *env) write(text string) {
	tmp := e.cfgPath + ".next"
	require.NoError(e.t, os.WriteFile(tmp, []byte(text), 0o600))
	require.NoError(e.t, os.Rename(tmp, e.cfgPath))
}

func policy(pkh string, allow ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    allow:\n", pkh)
	for _, a := range allow {
		fmt.Fprintf(&b, "      %s\n", a)
	}
	return b.String()
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}

type reply struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, method, url string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

var reloadsRE = regexp.MustCompile(`(?m)^sigil_config_reloads_total\{result="(\w+)"\} (\d+)$`)

// reloads returns sigil_config_reloads_total by result (empty when the
// metrics cannot be read; it may run outside the test's goroutine).
func reloads(_ *testing.T, d *harness.Daemon) map[string]int {
	out := map[string]int{}
	resp, err := client.Get(d.Utility + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, m := range reloadsRE.FindAllStringSubmatch(string(body), -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// outcome is one answered request of the load.
type outcome struct {
	what       string // "A tx", "B tx", "A attestation"
	status     int
	sent, done time.Time
	err        string
}

// phase is what each kind of request must get under one configuration.
type phase struct {
	name   string
	expect map[string]int
	// from is when the reload to this configuration was asked, until when
	// it was in force (the previous configuration may still answer
	// requests sent before until).
	from, until time.Time
}

// TestReloadUnderLoad: a pool of clients signs continuously while the
// configuration changes by SIGHUP and by POST /reload. Every answer is
// the one the configuration in force gives: outside a reload's window
// exactly that of the current configuration, within it that of the old or
// of the new one, and never anything else (no failed request). Keys and
// policies change; broken configurations are refused and change nothing.
func TestReloadUnderLoad(t *testing.T) {
	e := newEnv(t)
	pkA := harness.SealKey(t, e.kms, e.st, tezos.Ed25519)
	a := pkA.Hash().String()
	// B is sealed now but stored only later, while the daemon runs.
	pkB, blobB := seal(t, e.kms, tezos.P256)
	b := pkB.Hash().String()

	txA := "generic: [transaction]"
	c0 := e.render("", "tezos:\n"+policy(a, txA, "attestation:"))
	e.write(c0)
	d := harness.StartDaemon(t, harness.DaemonOptions{Config: e.cfgPath})
	require.Equal(t, 1, d.Keys)

	tx, err := hex.DecodeString(loadgen.GenericTransactionHex)
	require.NoError(t, err)
	chain := []byte{0x7a, 0x06, 0xa7, 0x70}
	pks := map[string]tezos.PublicKey{"A": pkA, "B": pkB}

	var (
		mu       sync.Mutex
		outcomes []outcome
		stop     atomic.Bool
		wg       sync.WaitGroup
		level    int32 = 1000
	)
	record := func(o outcome) {
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
	}
	signOnce := func(who, what string, msg []byte) {
		pkh := map[string]string{"A": a, "B": b}[who]
		start := time.Now()
		r := harness.PostSign(client, d.API+"/keys/"+pkh, msg)
		o := outcome{what: what, status: r.Status, sent: start, done: time.Now()}
		if r.Err != nil {
			o.err = r.Err.Error()
		}
		if r.Status == 200 {
			sig, err := tezos.ParseSignature(r.Signature)
			if err == nil {
				err = enclavetest.Verify(pks[who], msg, sig, tezos.SignVersion2)
			}
			if err != nil {
				o.err = "bad signature: " + err.Error()
			}
		}
		record(o)
	}
	// Three clients send transactions with A and B; one sends A's
	// attestations at rising levels (watermarked: one client, so that they
	// arrive in order).
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				who := []string{"A", "B"}[(i+w)%2]
				signOnce(who, who+" tx", tx)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			level++
			signOnce("A", "A attestation", loadgen.Attestation(chain, 1, level, 0))
		}
	}()
	loadFor := func(d time.Duration) { time.Sleep(d) }

	var phases []phase
	begin := func(name string, expect map[string]int) {
		phases = append(phases, phase{name: name, expect: expect, from: time.Now()})
	}
	settled := func() { phases[len(phases)-1].until = time.Now() }
	waitReloads := func(want map[string]int) {
		t.Helper()
		require.Eventually(t, func() bool {
			got := reloads(t, d)
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		}, 30*time.Second, 10*time.Millisecond, "reload counters never reached %v", want)
	}
	sighup := func() { require.NoError(t, syscall.Kill(d.Pid(), syscall.SIGHUP)) }
	post := func() reply { return do(t, "POST", d.Utility+"/reload") }

	begin("start", map[string]int{"A tx": 200, "B tx": 404, "A attestation": 200})
	settled()
	loadFor(time.Second)

	// SIGHUP: B is stored, A may no longer sign transactions, B may.
	require.NoError(t, e.st.Put(context.Background(), ports.StoredKey{PKH: b, Blob: blobB}))
	e.write(e.render("", "tezos:\n"+policy(a, "attestation:")+policy(b, txA)))
	begin("SIGHUP: B added, A's transactions refused", map[string]int{"A tx": 403, "B tx": 200, "A attestation": 200})
	sighup()
	waitReloads(map[string]int{"success": 1})
	settled()
	loadFor(time.Second)

	// POST /reload: A may sign transactions again, B no longer.
	e.write(e.render("", "tezos:\n"+policy(a, txA, "attestation:")+policy(b, "block:")))
	begin("POST /reload: A's transactions allowed, B's refused", map[string]int{"A tx": 200, "B tx": 403, "A attestation": 200})
	r := post()
	require.Equal(t, 200, r.status, r.body)
	assert.Contains(t, r.body, `"policies_changed":["`)
	waitReloads(map[string]int{"success": 2})
	settled()
	loadFor(time.Second)

	// Broken configurations: refused, the running one keeps serving.
	good := e.render("", "tezos:\n"+policy(a, txA, "attestation:")+policy(b, "block:"))
	e.write(good + "  : [\n")
	sighup()
	waitReloads(map[string]int{"refused": 1})
	e.write(e.render("", "tezos:\n"+policy(a, "generic: [transfer]")))
	r = post()
	assert.Equal(t, 422, r.status, r.body)
	assert.Contains(t, r.body, `unknown operation kind \"transfer\"`)
	e.write(e.render("  idle_timeout: 7s\n", "tezos:\n"+policy(a, "block:")))
	sighup()
	waitReloads(map[string]int{"refused": 3})
	require.Eventually(t, func() bool { return strings.Contains(d.Log(), "a restart is required to change server.idle_timeout") },
		5*time.Second, 10*time.Millisecond, "the refusal names the field")
	loadFor(time.Second)

	// Two reloads racing: a signal and a request at once. Both complete,
	// one after the other, and the file's configuration is in force.
	e.write(e.render("", "tezos:\n"+policy(a, "attestation:")+policy(b, txA)))
	begin("racing reloads: A's transactions refused, B's allowed", map[string]int{"A tx": 403, "B tx": 200, "A attestation": 200})
	var rr *http.Response
	var rerr error
	var raced sync.WaitGroup
	raced.Add(1)
	go func() { defer raced.Done(); rr, rerr = client.Post(d.Utility+"/reload", "", nil) }()
	sighup()
	raced.Wait()
	require.NoError(t, rerr)
	rr.Body.Close()
	assert.Equal(t, 200, rr.StatusCode)
	waitReloads(map[string]int{"success": 4})
	settled()
	loadFor(time.Second)

	// The endpoint is rate-limited: at most 3 reloads at once, then one
	// per 10 s; back-to-back requests soon get 429 (after at most 3
	// more, however long the steps above took).
	extra := 0
	for r = post(); r.status == 200 && extra < 3; r = post() {
		extra++
	}
	assert.Equal(t, 429, r.status, r.body)
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	waitReloads(map[string]int{"success": 4 + extra})

	stop.Store(true)
	wg.Wait()
	phases = append(phases, phase{from: time.Now()}) // sentinel: no end

	// Every answer is the one its configuration gives. Configuration i
	// was in force from a moment between phases[i].from (its reload was
	// asked) and phases[i].until (the reload was seen done) to a moment
	// between phases[i+1].from and phases[i+1].until: a request may have
	// been decided by it only if it was sent before the latter and
	// answered after the former. Outside the reloads' windows, that leaves
	// exactly one configuration.
	counts := map[string]int{}
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, o := range outcomes {
		if o.err != "" {
			report("%s: %s", o.what, o.err)
			continue
		}
		var allowed []int
		for i, p := range phases[:len(phases)-1] {
			end := phases[i+1].until // the sentinel's is zero: no end
			if !o.done.Before(p.from) && (end.IsZero() || o.sent.Before(end)) {
				allowed = append(allowed, p.expect[o.what])
			}
		}
		require.NotEmpty(t, allowed, "an outcome outside every phase: %+v", o)
		if !slices.Contains(allowed, o.status) {
			report("%s sent %s, answered %s: %d, want one of %v", o.what, o.sent.Format("15:04:05.000"), o.done.Format("15:04:05.000"), o.status, allowed)
		}
		counts[fmt.Sprintf("%s %d", o.what, o.status)]++
	}
	t.Logf("%d requests: %v", len(outcomes), counts)
	if bad > 0 {
		t.Errorf("%d of %d requests failed or got an answer no configuration in force gives", bad, len(outcomes))
	}
	// Each configuration was seen alone, for every kind of request.
	for i, p := range phases[:len(phases)-1] {
		for what, status := range p.expect {
			n := 0
			for _, o := range outcomes {
				if o.what == what && o.status == status && o.sent.After(p.until) && o.done.Before(phases[i+1].from) {
					n++
				}
			}
			assert.NotZero(t, n, "phase %q: no %s answered %d once settled", p.name, what, status)
		}
	}
	got := reloads(t, d)
	assert.Equal(t, map[string]int{"success": 4 + extra, "refused": 3, "failed": 0}, got)
}

// seal creates a key of type kt and seals it as the enclave does, without
// storing it.
func seal(t *testing.T, kms *localstandin.KMS, kt tezos.KeyType) (tezos.PublicKey, []byte) {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(kt, nil)
	require.NoError(t, err)
	pk, err := sk.Public()
	require.NoError(t, err)
	w, err := enclavewire.NewPrivateKey(sk)
	sk.Zero()
	require.NoError(t, err)
	plain, err := enclavewire.MarshalPrivateKey(w)
	w.Zero()
	require.NoError(t, err)
	blob, err := kms.Seal(plain)
	clear(plain)
	require.NoError(t, err)
	return pk, blob
}

// TestReloadAuthentication: POST /reload asks what the signer API asks:
// with server.jwt a bearer token, with server.authorized_keys a signature
// of the reload message, both when both are configured; and what it asks
// follows the configuration a reload puts in force.
func TestReloadAuthentication(t *testing.T) {
	e := newEnv(t)
	a := harness.SealKey(t, e.kms, e.st, tezos.Ed25519).Hash().String()
	c1, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	c2, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	require.NoError(t, err)
	pk1, _ := c1.Public()
	pk2, _ := c2.Public()
	const password, secret = "Reload-Passw0rd-2026!", "Reload!Secret#0123456789abcdefXYZ-long"
	e.write(e.render(fmt.Sprintf("  authorized_keys: [%s]\n  jwt:\n    users:\n      alice:\n        password: %q\n        secret: %q\n", pk1, password, secret),
		"tezos:\n"+policy(a, "block:")))
	d := harness.StartDaemon(t, harness.DaemonOptions{Config: e.cfgPath})

	login := do(t, "POST", d.API+"/login", "username", "alice", "password", password)
	require.Equal(t, 201, login.status, login.body)
	bearer := []string{"Authorization", "Bearer " + login.body, "username", "alice"}
	ts := time.Now().Unix()
	signedBy := func(sk tezos.PrivateKey, ts int64) string {
		sig, err := sk.Sign(signer.ReloadMessage(ts), tezos.SignVersion2)
		require.NoError(t, err)
		return fmt.Sprintf("%s/reload?timestamp=%d&authentication=%s", d.Utility, ts, sig)
	}
	for _, c := range []struct {
		name    string
		url     string
		headers []string
		status  int
	}{
		{"nothing", d.Utility + "/reload", nil, 401},
		{"a token, no signature", d.Utility + "/reload", bearer, 401},
		{"a signature, no token", signedBy(c1, ts), nil, 401},
		{"a token and another key's signature", signedBy(c2, ts), bearer, 403},
		{"a token of another user", signedBy(c1, ts), []string{"Authorization", "Bearer " + login.body, "username", "bob"}, 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, "POST", c.url, c.headers...)
			assert.Equal(t, c.status, r.status, r.body)
		})
	}
	assert.Equal(t, 0, reloads(t, d)["success"]+reloads(t, d)["refused"], "no refused request reloads")

	// Both: the reload applies a configuration with c2 as the only
	// authorized key and no JWT.
	e.write(e.render(fmt.Sprintf("  authorized_keys: %s\n", pk2), "tezos:\n"+policy(a, "block:")))
	good := signedBy(c1, ts)
	r := do(t, "POST", good, bearer...)
	require.Equal(t, 200, r.status, r.body)
	assert.Contains(t, r.body, `"authorized_keys_changed":true`)
	assert.Contains(t, r.body, `"jwt_changed":true`)

	// From now on c1 is not authorized, and no token is needed.
	r = do(t, "POST", good, bearer...)
	assert.Equal(t, 403, r.status, r.body)
	r = do(t, "POST", signedBy(c1, ts+1))
	assert.Equal(t, 403, r.status, r.body)
	next := signedBy(c2, ts+2)
	r = do(t, "POST", next)
	require.Equal(t, 200, r.status, r.body)
	r = do(t, "POST", next)
	assert.Equal(t, 401, r.status, "a replay: %s", r.body)
	assert.Contains(t, r.body, "already used")
	assert.Equal(t, 2, reloads(t, d)["success"])
}

// TestDocumentedReloadMessage: the shell lines docs/operations.md gives to
// build the signed reload message produce signer.ReloadMessage.
func TestDocumentedReloadMessage(t *testing.T) {
	root, err := harness.ModuleRoot()
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	require.NoError(t, err)
	var line string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "MSG=") {
			require.Empty(t, line, "two MSG= lines")
			line = l
		}
	}
	require.NotEmpty(t, line, "docs/operations.md has no MSG= line")
	assert.Contains(t, line, signer.ReloadTagHex)
	for _, ts := range []int64{0, 1_800_000_000, 1<<40 + 5} {
		out, err := exec.Command("bash", "-c", fmt.Sprintf("set -eu; TS=%d; %s; printf %%s \"$MSG\"", ts, line)).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, hex.EncodeToString(signer.ReloadMessage(ts)), string(out), "TS=%d", ts)
	}
}
