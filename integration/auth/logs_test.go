package auth

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/integration/harness"
)

// logRun is a daemon run through a representative set of requests, with
// what the test needs to find their lines.
type logRun struct {
	log          string
	pkhA, pkhB   string
	unknown      string
	traceID      string // the id the test sent in X-Request-Id
	ids          map[string]string
	generatedIDs []string
	config       string // the configuration file
}

// runForLogs starts a daemon (logs in JSON or text, at debug level) with
// JWT users and two keys, and sends: a failed and a good login, a key
// lookup, a consensus signature, its identical repeat, a lower level
// (watermark, 409), a transaction signed, one refused by the policy, a
// malformed request (400), an unknown path (404), a request with its own
// X-Request-Id; then the reloads: POST /reload without a token (401), a
// SIGHUP that lets B sign transactions (and a transaction B signs), a POST
// /reload of a configuration with a misspelt kind (refused); then SIGTERM.
func runForLogs(t *testing.T, json bool) logRun {
	e := newEnv(t)
	r := logRun{pkhA: e.generate("tz1"), pkhB: e.generate("tz2"), unknown: "tz1burnburnburnburnburnburnburjAYjjX", traceID: "proxy-7f3a:42", ids: map[string]string{}}
	server := `  jwt:
    users:
      alice:
        password: "` + alicePassword + `"
        secret: "` + aliceSecret + `"
`
	policies := func(blockA, opsB string) string {
		return fmt.Sprintf(`tezos:
  %s:
    allow:
      %s:
      attestation:
      generic: [transaction]
  %s:
    allow:
      generic: [%s]
  %s:
    allow:
      block:
`, r.pkhA, blockA, r.pkhB, opsB, r.unknown)
	}
	cfg := e.writeConfig(server, policies("block", "reveal"))
	r.config = cfg
	args := []string{"serve", "-c", cfg, "--log", "debug", "--no-list"} // no key table: every line is a log line
	if json {
		args = append(args, "--json-log")
	}
	// The harness reads the ready line in text; in JSON, wait for the
	// listeners by probing.
	d := startDaemonAnyFormat(t, e, args, json)

	// Logins: a wrong password (twice: the second is aggregated), a good
	// one.
	bad := send(t, "POST", d.url+"/login", "", "username", "alice", "password", "Wrong-Passw0rd-2024!")
	require.Equal(t, 401, bad.status, bad.body)
	require.Equal(t, 401, send(t, "POST", d.url+"/login", "", "username", "mallory", "password", "Wrong-Passw0rd-2024!").status)
	good := send(t, "POST", d.url+"/login", "", "username", "alice", "password", alicePassword)
	require.Equal(t, 201, good.status, good.body)
	auth := []string{"Authorization", "Bearer " + good.body, "username", "alice"}
	do := func(name, method, path, body string, want int, headers ...string) {
		t.Helper()
		rep, id := sendID(t, method, d.url+path, body, append(slices.Clone(auth), headers...)...)
		require.Equal(t, want, rep.status, "%s: %s", name, rep.body)
		require.NotEmpty(t, id, "%s: no X-Request-Id in the answer", name)
		r.ids[name] = id
	}
	att := func(level int32) string { return `"` + hex.EncodeToString(attestation(level, 0)) + `"` }
	tx := `"` + loadgen.GenericTransactionHex + `"`
	do("get key", "GET", "/keys/"+r.pkhA, "", 200)
	do("signed", "POST", "/keys/"+r.pkhA, att(100), 200)
	do("replayed", "POST", "/keys/"+r.pkhA, att(100), 200)
	do("watermark", "POST", "/keys/"+r.pkhA, att(50), 409)
	do("transaction", "POST", "/keys/"+r.pkhA, tx, 200)
	do("refused", "POST", "/keys/"+r.pkhB, tx, 403)
	do("bad request", "POST", "/keys/"+r.pkhA, `"zz"`, 400)
	do("unknown path", "GET", "/nowhere", "", 404)
	do("traced", "POST", "/keys/"+r.pkhA, att(101), 200, "X-Request-Id", r.traceID)
	require.Equal(t, r.traceID, r.ids["traced"], "a well-formed X-Request-Id is kept")
	do("bad trace id", "POST", "/keys/"+r.pkhA, att(102), 200, "X-Request-Id", "has spaces and \"quotes\"")
	require.Regexp(t, `^[0-9a-f]{32}$`, r.ids["bad trace id"], "a malformed X-Request-Id is replaced")

	// Reloads: one refused for want of a token, one by SIGHUP that lets B
	// sign transactions, one by POST /reload of a misspelt kind (refused,
	// the running configuration kept).
	unauth := send(t, "POST", d.util+"/reload", "")
	require.Equal(t, 401, unauth.status, unauth.body)
	e.writeConfig(server, policies("block", "reveal, transaction"))
	require.NoError(t, syscall.Kill(d.proc.Pid(), syscall.SIGHUP))
	waitLog(t, d, "configuration reloaded")
	do("after reload", "POST", "/keys/"+r.pkhB, tx, 200)
	e.writeConfig(server, policies("blocks", "reveal"))
	refusedReload := send(t, "POST", d.util+"/reload", "", auth...)
	require.Equal(t, 422, refusedReload.status, refusedReload.body)
	do("kept", "POST", "/keys/"+r.pkhB, tx, 200)
	d.proc.Stop()
	r.log = d.proc.Log()
	return r
}

// startDaemonAnyFormat starts the daemon and waits until it is ready
// (its keys loaded), whatever the log format.
func startDaemonAnyFormat(t *testing.T, e *env, args []string, json bool) *daemon {
	t.Helper()
	if !json {
		h := harness.StartDaemon(t, harness.DaemonOptions{Binary: e.sigil, Args: args})
		return &daemon{proc: h.Process, url: h.API, util: h.Utility}
	}
	var api, util string
	ready := regexp.MustCompile(`"msg":"signer ready","address":"([^"]+)","utility_address":"([^"]+)"`)
	p := harness.StartProcess(t, harness.ProcessOptions{Name: "sigil", Binary: e.sigil, Args: args,
		Ready: func(line string) bool {
			if m := ready.FindStringSubmatch(line); m != nil {
				api, util = "http://"+m[1], "http://"+m[2]
				return true
			}
			return false
		}})
	return &daemon{proc: p, url: api, util: util}
}

// waitLog waits until the daemon's log has a line containing s.
func waitLog(t *testing.T, d *daemon, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.proc.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 30 s:\n%s", s, d.proc.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendID is send, returning the answer's X-Request-Id too.
func sendID(t *testing.T, method, url, body string, headers ...string) (reply, string) {
	t.Helper()
	var id string
	rep := sendWith(t, method, url, body, func(h map[string][]string) { id = strings.Join(h["X-Request-Id"], ",") }, headers...)
	return rep, id
}

// TestLogLinesJSON: in JSON, every line of a daemon's run (start, logins,
// signatures, refusals, errors, reloads, stop; at debug level) is one object
// with each key once, every field name has one JSON type across all lines,
// and the lines about a request carry its id, client and latency (a
// number of milliseconds).
func TestLogLinesJSON(t *testing.T) {
	r := runForLogs(t, true)
	var lines []map[string]any
	fieldTypes := map[string]map[string]string{} // field → type → first line with it
	for i, raw := range strings.Split(strings.TrimSpace(r.log), "\n") {
		m, err := logging.DecodeLine([]byte(raw))
		require.NoError(t, err, "line %d is not one JSON object with unique keys:\n%s", i+1, raw)
		lines = append(lines, m)
		for k, v := range m {
			ty := logging.JSONType(v)
			if fieldTypes[k] == nil {
				fieldTypes[k] = map[string]string{}
			}
			if _, ok := fieldTypes[k][ty]; !ok {
				fieldTypes[k][ty] = raw
			}
		}
	}
	for _, k := range sortedFields(fieldTypes) {
		if len(fieldTypes[k]) > 1 {
			t.Errorf("field %q has several JSON types: %v", k, fieldTypes[k])
		}
	}
	t.Logf("%d lines, %d field names", len(lines), len(fieldTypes))

	find := func(msg string, where func(m map[string]any) bool) map[string]any {
		t.Helper()
		for _, m := range lines {
			if m["msg"] == msg && (where == nil || where(m)) {
				return m
			}
		}
		t.Fatalf("no %q line", msg)
		return nil
	}
	byID := func(name string) func(m map[string]any) bool {
		return func(m map[string]any) bool { return m["request_id"] == r.ids[name] }
	}
	request := func(m map[string]any, name string) {
		t.Helper()
		assert.Equal(t, r.ids[name], m["request_id"], "%s: %v", name, m)
		assert.Equal(t, "127.0.0.1", m["client"], "%s: %v", name, m)
		ms, ok := m["duration_ms"].(float64)
		assert.True(t, ok && ms >= 0 && ms < 60_000, "%s: duration_ms %#v", name, m["duration_ms"])
	}

	// Start: what runs, from where, on what.
	start := find("sigil starting", nil)
	for _, k := range []string{"version", "revision", "config", "base_dir", "base_dir_from", "watermark", "watermark_location", "vaults"} {
		assert.NotEmpty(t, start[k], "sigil starting has no %s: %v", k, start)
	}
	assert.Equal(t, "file", start["watermark"])
	assert.Equal(t, "cs (confidentialspace)", start["vaults"])
	ready := find("signer ready", nil)
	assert.Equal(t, "cs (confidentialspace): 2 keys", ready["vaults"])
	assert.Equal(t, float64(2), ready["keys"])
	assert.Equal(t, start["config"], ready["config"])
	missing := find("the policy names a key that no vault holds: it cannot sign (a key file or storage other than the one meant, or a typo in the address?)", nil)
	assert.Equal(t, "WARN", missing["level"])
	assert.Equal(t, r.unknown, missing["pkh"])
	assert.Equal(t, "tezos."+r.unknown, missing["field"])

	// Signatures and refusals.
	signed := find("signed", byID("signed"))
	request(signed, "signed")
	assert.Equal(t, r.pkhA, signed["pkh"])
	assert.Equal(t, "cs", signed["vault"])
	assert.Equal(t, "attestation", signed["kind"])
	assert.Equal(t, float64(100), signed["block_level"], "the block's level, apart from the line's level")
	assert.Equal(t, "INFO", signed["level"])
	request(find("identical consensus request repeated: answering with the recorded signature", byID("replayed")), "replayed")
	wm := find("sign request failed", byID("watermark"))
	request(wm, "watermark")
	assert.Equal(t, float64(50), wm["block_level"])
	request(find("request failed", byID("watermark")), "watermark")
	tx := find("signed", byID("transaction"))
	assert.Equal(t, "transaction", tx["ops"])
	refused := find("sign request refused by policy", byID("refused"))
	request(refused, "refused")
	assert.Equal(t, "transaction", refused["ops"], "ops is a string on a refusal too")
	assert.Equal(t, r.pkhB, refused["pkh"])
	bad := find("request failed", byID("bad request"))
	request(bad, "bad request")
	assert.Equal(t, float64(400), bad["status"])
	traced := find("signed", byID("traced"))
	assert.Equal(t, r.traceID, traced["request_id"])
	request(find("request answered", byID("unknown path")), "unknown path")

	// Logins: the user and the address of a failure; the second failure
	// from the address is counted, not logged (it is in the summary 10 s
	// later, after this run).
	failed := find("request failed", func(m map[string]any) bool { return m["path"] == "/login" })
	assert.Equal(t, "alice", failed["user"])
	assert.Equal(t, "127.0.0.1", failed["client"])
	assert.Equal(t, float64(401), failed["status"])
	assert.NotContains(t, r.log, "Wrong-Passw0rd", "a password reached the log")
	assert.NotContains(t, r.log, alicePassword, "a password reached the log")
	login := find("JWT login", nil)
	assert.Equal(t, "alice", login["user"])

	// Reloads: a POST /reload without a token, a SIGHUP applied, a POST
	// /reload refused with the configuration error in its one format.
	unauth := find("reload request refused", nil)
	assert.Equal(t, "WARN", unauth["level"])
	assert.Equal(t, "127.0.0.1", unauth["client"])
	assert.Equal(t, float64(401), unauth["status"])
	find("SIGHUP received: reloading the configuration", nil)
	reloaded := find("configuration reloaded", nil)
	assert.Equal(t, "SIGHUP", reloaded["trigger"])
	assert.Equal(t, r.pkhB, reloaded["policies_changed"], "a string, comma-separated")
	assert.Equal(t, "", reloaded["keys_added"])
	assert.Equal(t, float64(2), reloaded["keys_before"], "the keys held")
	assert.Equal(t, false, reloaded["jwt_changed"])
	ms, ok := reloaded["duration_ms"].(float64)
	assert.True(t, ok && ms >= 0 && ms < 60_000, "duration_ms %#v", reloaded["duration_ms"])
	request(find("signed", byID("after reload")), "after reload")
	refusedReload := find("configuration reload refused: the running configuration is kept", nil)
	assert.Equal(t, "ERROR", refusedReload["level"])
	assert.Equal(t, "POST /reload", refusedReload["trigger"])
	assert.Regexp(t, regexp.QuoteMeta(r.config)+`:[0-9]+: tezos\.`+r.pkhA+`\.allow\.blocks: unknown request kind "blocks" \(did you mean block\?`, refusedReload["error"])
	find("signed", byID("kept"))
	find("sigil stopped", nil)
}

// TestLogLinesText: the same run in slog's text format: each key once per
// line, and the fields the JSON test checks.
func TestLogLinesText(t *testing.T) {
	r := runForLogs(t, false)
	for i, line := range strings.Split(strings.TrimSpace(r.log), "\n") {
		if !strings.HasPrefix(line, "time=") {
			continue // the key table serve prints at start
		}
		keys, err := logfmtKeys(line)
		require.NoError(t, err, "line %d: %s", i+1, line)
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("line %d has %s twice: %s", i+1, k, line)
			}
			seen[k] = true
		}
	}
	ms := `duration_ms=[0-9]+(\.[0-9]+)?`
	for name, re := range map[string]string{
		"start":          `level=INFO msg="sigil starting" version=\S+ revision=\S+ config=\S+ base_dir=\S+ base_dir_from=base_dir watermark=file watermark_location=\S+ vaults="cs \(confidentialspace\)"`,
		"ready":          `level=INFO msg="signer ready" address=127\.0\.0\.1:[0-9]+ utility_address=127\.0\.0\.1:[0-9]+ keys=2 vaults="cs \(confidentialspace\): 2 keys" version=`,
		"missing":        `level=WARN msg="the policy names a key that no vault holds.*" pkh=` + r.unknown,
		"signed":         `level=INFO msg=signed pkh=` + r.pkhA + ` vault=cs kind=attestation chain_id=\S+ block_level=100 round=0 request_id=` + r.ids["signed"] + ` client=127\.0\.0\.1 ` + ms,
		"refused":        `level=WARN msg="sign request refused by policy" pkh=` + r.pkhB + ` vault=cs kind=generic ops=transaction error=.* request_id=` + r.ids["refused"] + ` client=127\.0\.0\.1 ` + ms,
		"409":            `level=WARN msg="request failed" component=http method=POST path=/keys/` + r.pkhA + ` status=409 error=.* request_id=` + r.ids["watermark"] + ` client=127\.0\.0\.1 ` + ms,
		"400":            `level=WARN msg="request failed" component=http method=POST path=/keys/` + r.pkhA + ` status=400 error=.* request_id=` + r.ids["bad request"],
		"login":          `level=WARN msg="request failed" component=http method=POST path=/login status=401 client=127\.0\.0\.1 user=alice error=.* request_id=\S+ ` + ms,
		"traced":         `msg=signed .* request_id=` + regexp.QuoteMeta(r.traceID) + ` `,
		"answered":       `level=DEBUG msg="request answered" component=http method=GET path=/nowhere status=404 request_id=` + r.ids["unknown path"],
		"reload 401":     `level=WARN msg="reload request refused" component=http client=127\.0\.0\.1 status=401 error=`,
		"reloaded":       `level=INFO msg="configuration reloaded" trigger=SIGHUP keys_before=\d+ keys_after=\d+ keys_added="" keys_removed="" policies_changed=` + r.pkhB + ` .* ` + ms,
		"reload refused": `level=ERROR msg="configuration reload refused: the running configuration is kept" trigger="POST /reload" error="reload refused: ` + regexp.QuoteMeta(r.config) + `:[0-9]+: tezos\.` + r.pkhA + `\.allow\.blocks: unknown request kind \\"blocks\\"`,
	} {
		assert.Regexp(t, regexp.MustCompile(re), r.log, name)
	}
	assert.NotRegexp(t, `msg="signer ready".* keys=0`, r.log)
	assert.NotContains(t, r.log, "Wrong-Passw0rd")
}

// logfmtKeys returns the keys of one line of slog's text format.
func logfmtKeys(line string) ([]string, error) {
	var keys []string
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) {
			break
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq <= 0 {
			return nil, fmt.Errorf("no key at %d", i)
		}
		keys = append(keys, line[i:i+eq])
		i += eq + 1
		if i < len(line) && line[i] == '"' {
			v, err := strconv.QuotedPrefix(line[i:])
			if err != nil {
				return nil, fmt.Errorf("value at %d: %w", i, err)
			}
			i += len(v)
		} else {
			for i < len(line) && line[i] != ' ' {
				i++
			}
		}
	}
	return keys, nil
}

func sortedFields(m map[string]map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sendWith is send, handing the answer's headers to got.
func sendWith(t *testing.T, method, url, body string, got func(map[string][]string), headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	got(resp.Header)
	return reply{status: resp.StatusCode, body: string(b)}
}
