package adversarial

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/loadgen"
)

// An unset variable in a security-relevant field used to become "" and
// silently turn authentication off, move the watermarks to /signer (a
// double signature), read /keys.json or listen on every interface. Each is
// now a start-up error naming the variable and the field.
func TestUnsetVariablesRefused(t *testing.T) {
	e := newEnv(t)
	const pkh = "tz1burnburnburnburnburnburnburjAYjjX"
	for _, tc := range []struct{ name, yaml, field string }{
		{"server authorized_keys", "server:\n  authorized_keys: ${SIGIL_ADV_UNSET}\n", "server.authorized_keys"},
		{"authorized_keys list item", "server:\n  authorized_keys: [\"${SIGIL_ADV_UNSET}\"]\n", "server.authorized_keys[0]"},
		{"per-key authorized_keys", "tezos:\n  " + pkh + ":\n    authorized_keys: ${SIGIL_ADV_UNSET}\n", "tezos." + pkh + ".authorized_keys"},
		{"base_dir", "", "base_dir"},
		{"storage path", "", "vaults.cs.config.storage.config"},
		{"server address", "server:\n  address: ${SIGIL_ADV_UNSET}\n", "server.address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.writeConfig(tc.yaml)
			switch tc.name {
			case "base_dir":
				data, _ := os.ReadFile(cfg)
				require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "base_dir: "+e.dir, "base_dir: ${SIGIL_ADV_UNSET}/signer", 1)), 0o600))
			case "storage path":
				data, _ := os.ReadFile(cfg)
				require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "config: "+e.keysPath, "config: ${SIGIL_ADV_UNSET}/keys.json", 1)), 0o600))
			}
			out := e.refusesToStart(cfg)
			assert.Contains(t, out, "SIGIL_ADV_UNSET is not set")
			assert.Contains(t, out, tc.field)
		})
	}
	_, err := os.Stat("/signer/watermark_v2")
	assert.True(t, os.IsNotExist(err), "nothing was created under /signer")
}

// A second YAML document after --- was ignored; it is refused.
func TestSecondYAMLDocumentRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.writeConfig("---\nserver:\n  authorized_keys: edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav\n")
	assert.Contains(t, e.refusesToStart(cfg), "second YAML document")
}

// 20,000 requests naming keys the signer does not hold (random, malformed)
// leave the number of metric series flat.
func TestRandomPKHsLeaveSeriesFlat(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	tx := mustHex(loadgen.GenericTransactionHex)
	require.Equal(t, 200, post(t, d.api+"/keys/"+pkh, tx).status)
	for _, p := range []string{"tz1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "nonsense"} {
		post(t, d.api+"/keys/"+p, tx) // one of each failure status first
	}
	before := seriesCount(get(t, d.utility+"/metrics").body)

	const n, workers = 20000, 16
	var wg sync.WaitGroup
	statuses := make([]map[int]int, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[w] = map[int]int{}
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := w; i < n; i += workers {
				var p string
				if i%2 == 0 {
					p = fmt.Sprintf("tz1%033d", r.Uint64()) // the shape of an address, never a held key
				} else {
					p = fmt.Sprintf("x%dy%d", r.Uint64(), i) // malformed
				}
				resp, err := client.Post(d.api+"/keys/"+p, "application/json", strings.NewReader(`"03"`))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses[w][resp.StatusCode]++
			}
		}()
	}
	wg.Wait()
	after := get(t, d.utility+"/metrics").body
	assert.Equal(t, before, seriesCount(after), "series count changed after %d requests to unknown keys", n)
	assert.NotContains(t, after, "tz1000")
	assert.Less(t, len(after), 256<<10, "/metrics stays small")
}

// A BLS attestation signed with ?version=1 and repeated identically with
// ?version=2 is refused (409 naming the versions), not answered with the
// version-1 signature.
func TestVersionChangedReplayRefused(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz4")
	d := e.start(e.writeConfig(policy(pkh)), true)
	msg := attestation(100, 0, 7, true)
	first := post(t, d.api+"/keys/"+pkh+"?version=1", msg)
	require.Equal(t, 200, first.status, first.body)
	again := post(t, d.api+"/keys/"+pkh+"?version=1", msg)
	require.Equal(t, 200, again.status, again.body)
	assert.Equal(t, first.sig, again.sig, "identical retry replays")
	other := post(t, d.api+"/keys/"+pkh+"?version=2", msg)
	assert.Equal(t, 409, other.status, other.body)
	assert.Contains(t, other.msg, "signing version 1")
	assert.Contains(t, other.msg, "version 2")
}

// The tz4-only consensus encoding is refused for a tz1 key (400 naming the
// form and the key type); ?version=%zz is a 400, not silently the default.
func TestMalformedRequestsNamed(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	r := post(t, d.api+"/keys/"+pkh, attestation(10, 0, 1, true))
	assert.Equal(t, 400, r.status, r.body)
	assert.Contains(t, r.msg, "tz4-only encoding")
	assert.Contains(t, r.msg, "ed25519")

	r = post(t, d.api+"/keys/"+pkh+"?version=%zz", mustHex(loadgen.GenericTransactionHex))
	assert.Equal(t, 400, r.status, r.body)
	assert.Contains(t, r.msg, "malformed query string")
}

// SIGHUP reloads the configuration and the signer keeps serving (the
// reload itself is tested in integration/reload); SIGTERM drains, closes
// the watermark store and exits 0, each step logged.
func TestSignals(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	tx := mustHex(loadgen.GenericTransactionHex)
	for range 3 {
		require.NoError(t, syscall.Kill(d.proc.Pid(), syscall.SIGHUP))
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "the reload's log line", func() bool { return strings.Contains(d.proc.Log(), "configuration reloaded") })
	require.False(t, d.proc.Exited(), "SIGHUP stopped the daemon:\n%s", d.proc.Tail(20))
	assert.Equal(t, 200, post(t, d.api+"/keys/"+pkh, tx).status)
	assert.Equal(t, 200, get(t, d.utility+"/healthz").status)

	require.NoError(t, syscall.Kill(d.proc.Pid(), syscall.SIGTERM))
	require.NoError(t, d.proc.Wait(), "exit status after SIGTERM:\n%s", d.proc.Tail(20))
	log := d.proc.Log()
	for _, want := range []string{"signal received: shutting down", "draining in-flight requests", "HTTP servers stopped", "watermark store closed", "sigil stopped"} {
		assert.Contains(t, log, want)
	}
}

// A key file holding `null` was read as an empty store (0 keys, healthy,
// every key 404). It is corruption: not ready, with the reason.
func TestNullKeyFileRefused(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	require.NoError(t, os.WriteFile(e.keysPath, []byte("null\n"), 0o600))
	d := e.start(e.writeConfig(policy(pkh)), false)
	eventually(t, 10*time.Second, "a 503 from /healthz", func() bool {
		r := get(t, d.utility+"/healthz")
		return r.status == 503 && strings.Contains(r.body, "corrupt")
	})
	r := post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex))
	assert.Equal(t, 503, r.status, "a key of a corrupt store is unavailable, not missing: %s", r.body)
}

// Idle keep-alive connections are closed on both listeners after
// server.idle_timeout.
func TestIdleConnectionsClosed(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)+"server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n  idle_timeout: 1s\n"), true)
	for _, base := range []string{d.utility, d.api} {
		addr := strings.TrimPrefix(base, "http://")
		conns := make([]net.Conn, 20)
		for i := range conns {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			conns[i] = c
		}
		for _, c := range conns {
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			require.Contains(t, line, "HTTP/1.1")
			// Drain the response, then wait for the server to hang up.
			require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
			for {
				if _, err := br.ReadByte(); err != nil {
					assert.NotContains(t, err.Error(), "timeout", "%s kept an idle connection open", base)
					break
				}
			}
		}
	}
}

// A huge pkh or version is echoed shortened, in the body and in the log
// line; past the header limit the request is refused with a short body.
func TestEchoesBounded(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	big := strings.Repeat("A", 60<<10)
	tx := mustHex(loadgen.GenericTransactionHex)
	for _, url := range []string{d.api + "/keys/tz1" + big, d.api + "/keys/" + pkh + "?version=" + big} {
		r := post(t, url, tx)
		assert.Equal(t, 400, r.status)
		assert.Less(t, len(r.body), 2048, "body echoes the input unbounded")
		assert.Contains(t, r.msg, "bytes)", "the echo is marked as shortened")
	}
	// Past the 64 KiB header limit the server answers 431 and hangs up
	// (the client may see the reset before the answer): either way the
	// request goes no further and nothing large comes back.
	resp, err := client.Post(d.api+"/keys/tz1"+strings.Repeat("A", 1<<20), "application/json", strings.NewReader(`"03"`))
	if err == nil {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		assert.Equal(t, 431, resp.StatusCode)
		assert.Less(t, len(raw), 2048)
	} else {
		assert.Regexp(t, "connection reset|broken pipe|EOF", err.Error())
	}
	time.Sleep(200 * time.Millisecond)
	for _, line := range strings.Split(d.proc.Log(), "\n") {
		assert.Less(t, len(line), 4096, "log line of %d bytes: %.200s…", len(line), line)
	}
}

// A watermark file with a case-variant duplicate ("level" and "Level") was
// read as the lower mark; the daemon now refuses to start on it.
func TestCaseDuplicateWatermarkFileRefused(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	wdir := filepath.Join(e.dir, "watermark_v2")
	require.NoError(t, os.MkdirAll(wdir, 0o700))
	body := `{"` + pkh + `":{"attestation":{"level":9000,"Level":1,"round":0}}}`
	require.NoError(t, os.WriteFile(filepath.Join(wdir, "NetXdQprcVkpaWU.json"), []byte(body), 0o600))
	out := e.refusesToStart(e.writeConfig(policy(pkh)))
	assert.Contains(t, out, "is corrupt")
	assert.Contains(t, out, `"level" and "Level"`)
}

// /healthz is not ready while the watermark directory cannot be written
// (every consensus request would fail), and ready again once it can.
func TestHealthzWatermarkDirReadOnly(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	require.Equal(t, 200, get(t, d.utility+"/healthz").status)
	wdir := filepath.Join(e.dir, "watermark_v2")
	undo := makeReadOnly(t, wdir)
	r := get(t, d.utility+"/healthz")
	assert.Equal(t, 503, r.status, r.body)
	assert.Contains(t, r.body, "watermark")
	s := post(t, d.api+"/keys/"+pkh, attestation(5, 0, 1, false))
	assert.Equal(t, 503, s.status, "a consensus request without a durable mark is not signed: %s", s.body)
	assert.Empty(t, s.sig)
	undo()
	assert.Equal(t, 200, get(t, d.utility+"/healthz").status)
	assert.Equal(t, 200, post(t, d.api+"/keys/"+pkh, attestation(5, 0, 1, false)).status)
}

// makeReadOnly makes dir unwritable for this process: chmod for an
// unprivileged user, the immutable attribute for root (which chmod does
// not stop). It returns the undo.
func makeReadOnly(t *testing.T, dir string) func() {
	t.Helper()
	if os.Geteuid() != 0 {
		require.NoError(t, os.Chmod(dir, 0o500))
		return func() { _ = os.Chmod(dir, 0o700) }
	}
	out, err := exec.Command("chattr", "+i", dir).CombinedOutput()
	require.NoError(t, err, "chattr +i (root cannot be stopped by chmod): %s", out)
	undo := func() { _ = exec.Command("chattr", "-i", dir).Run() }
	t.Cleanup(undo)
	return undo
}

// A 5xx body names the problem without the host's paths or addresses.
func TestServerErrorsHideAddresses(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	e.enclave.Kill()
	eventually(t, 10*time.Second, "a 503 while the enclave is down", func() bool {
		r := post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex))
		if r.status != 503 {
			return false
		}
		assert.NotContains(t, r.body, "127.0.0.1")
		assert.NotContains(t, r.body, fmt.Sprint(e.encPort))
		assert.NotContains(t, r.body, e.dir)
		return true
	})
	// Idle connections notice the enclave is gone within their probe
	// period (1 s).
	var r result
	eventually(t, 5*time.Second, "/healthz 503", func() bool {
		r = get(t, d.utility+"/healthz")
		return r.status == 503
	})
	assert.NotContains(t, r.body, "127.0.0.1")
	assert.NotContains(t, r.body, fmt.Sprint(e.encPort))
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// An enclave that comes back initialized with another KMS key cannot open
// the stored keys: every sign would fail, so /healthz is not ready and
// names the key (not the blob), until the right KMS key is back.
func TestHealthzWrongKMSKey(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	d := e.start(e.writeConfig(policy(pkh)), true)
	require.Equal(t, 200, get(t, d.utility+"/healthz").status)
	e.enclave.Kill()
	e.startEnclave(filepath.Join(e.dir, "other-kms.key"))
	eventually(t, 20*time.Second, "a 503 naming the key", func() bool {
		r := get(t, d.utility+"/healthz")
		return r.status == 503 && strings.Contains(r.body, pkh)
	})
	s := post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex))
	assert.GreaterOrEqual(t, s.status, 500, s.body)
	assert.Empty(t, s.sig)
	e.enclave.Kill()
	e.startEnclave(e.kmsPath)
	eventually(t, 20*time.Second, "ready again with the right KMS key", func() bool {
		return get(t, d.utility+"/healthz").status == 200
	})
	assert.Equal(t, 200, post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex)).status)
}

// Numeric settings are validated for range: `connections: -3` was
// accepted; the daemon now refuses to start, naming the field and range.
func TestNumericRangesRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.writeConfig("")
	data, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "      dial_timeout: 1s\n", "      dial_timeout: 1s\n      connections: -3\n", 1)), 0o600))
	out := e.refusesToStart(cfg)
	assert.Contains(t, out, "connections")
	assert.Contains(t, out, "-3")
}
