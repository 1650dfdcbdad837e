package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// linkConfig writes a daemon configuration on the enclave at 127.0.0.1:port
// with the given rpc_timeout, pool size and watermark driver, allowing
// transactions and (pre)attestations for every key.
func linkConfig(t *testing.T, dir string, port int, keysPath, rpcTimeout, wm string, conns int, keys []key) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "base_dir: %s\n", dir)
	b.WriteString("server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n")
	b.WriteString("vaults:\n  cs:\n    driver: confidentialspace\n    config:\n")
	fmt.Fprintf(&b, "      host: 127.0.0.1\n      port: \"%d\"\n", port)
	b.WriteString("      wip_provider_path: fault/wip\n      encryption_key_path: fault/kms\n")
	fmt.Fprintf(&b, "      connections: %d\n      dial_timeout: 1s\n      rpc_timeout: %s\n", conns, rpcTimeout)
	fmt.Fprintf(&b, "      storage:\n        driver: file\n        config: %s\n", keysPath)
	fmt.Fprintf(&b, "watermark:\n  driver: %s\n", wm)
	b.WriteString("tezos:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s:\n    allow:\n      generic: [transaction]\n      preattestation:\n      attestation:\n", k.pkh)
	}
	path := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var statRE = regexp.MustCompile(`(\w+)=(\d+)\b`)

// enclaveStats asks a sigil-enclave process for its counters (SIGUSR1) and
// reads them from the "enclave stats" line it logs.
func enclaveStats(t *testing.T, p *harness.Process) map[string]int64 {
	t.Helper()
	before := strings.Count(p.Log(), `msg="enclave stats"`)
	if err := syscall.Kill(p.Pid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		log := p.Log()
		if strings.Count(log, `msg="enclave stats"`) > before {
			lines := strings.Split(log, "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if strings.Contains(lines[i], `msg="enclave stats"`) {
					out := map[string]int64{}
					for _, m := range statRE.FindAllStringSubmatch(lines[i], -1) {
						out[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
					}
					return out
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the enclave logged no stats line:\n%s", p.Tail(20))
	return nil
}

// metric returns the sum of the daemon's samples whose series starts with
// prefix and contains every label in labels.
func metric(t *testing.T, c *http.Client, utility, prefix string, labels ...string) float64 {
	t.Helper()
	resp, err := c.Get(utility + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// linkCounts is what must not move while the link is idle.
type linkCounts struct {
	Accepted, Initialize, Import, KMS int64
	Redials, RPCImport, RPCInitialize float64
	LogLines                          int
}

func readLink(t *testing.T, enc *harness.Process, d *daemon, hc *http.Client) linkCounts {
	st := enclaveStats(t, enc)
	return linkCounts{
		Accepted: st["accepted"], Initialize: st["requests_initialize"], Import: st["requests_import"], KMS: st["kms_calls"],
		Redials:       metric(t, hc, d.utility, "sigil_enclave_redials_total"),
		RPCImport:     metric(t, hc, d.utility, "sigil_enclave_rpc_duration_seconds_count", `method="Import"`),
		RPCInitialize: metric(t, hc, d.utility, "sigil_enclave_rpc_duration_seconds_count", `method="Initialize"`),
		LogLines:      strings.Count(d.proc.Log(), "\n"),
	}
}

// signEach signs a transaction with every key and verifies each signature
// with an independent verifier.
func signEach(t *testing.T, hc *http.Client, d *daemon, keys []key) {
	t.Helper()
	for _, k := range keys {
		r := sign(hc, d.api, k.pkh, transaction)
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("sign with %s: %d %q %v", k.pkh, r.status, r.msg, r.err)
		}
		sig, err := tezos.ParseSignature(r.sig)
		if err != nil {
			t.Fatal(err)
		}
		if err := enclavetest.Verify(k.pk, transaction, sig, tezos.SignVersionLatest); err != nil {
			t.Fatalf("sign with %s: %v", k.pkh, err)
		}
	}
}

// TestIdleLinkIsFreeAndARestartReimportsOnce: a daemon with 50 keys and
// rpc_timeout 1s, once every connection holds every key, is left alone for
// 6 s (6 × rpc_timeout, 24 idle probes): the enclave counts no connection,
// Initialize, Import or KMS call, the daemon's metrics no redial, Import or
// Initialize, and its log no line. Then the enclave is killed and
// restarted on the same port: the new enclave sees exactly one connection
// and one Initialize per pool slot and one Import and one KMS call per key
// per connection, the daemon logs the loss and the recovery once each, and
// it is free again when idle after that.
func TestIdleLinkIsFreeAndARestartReimportsOnce(t *testing.T) {
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	sigilBin := harness.BuildBinary(t, "./cmd/sigil")
	dir := t.TempDir()
	kmsPath, keysPath := filepath.Join(dir, "enclave-kms.key"), filepath.Join(dir, "keys.json")
	var types []tezos.KeyType
	for i := range 50 {
		types = append(types, tezos.KeyTypes[i%len(tezos.KeyTypes)])
	}
	keys := writeKeys(t, kmsPath, keysPath, types...)
	const conns, rpcTimeout, idle = 4, time.Second, 6 * time.Second
	port := harness.FreePort(t)
	enc, _ := startEnclave(t, enclaveBin, port, kmsPath)
	d := startDaemon(t, sigilBin, linkConfig(t, dir, port, keysPath, rpcTimeout.String(), "file", conns, keys))
	hc := newHTTPClient()
	synced := func(enc *harness.Process) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for enclaveStats(t, enc)["requests_import"] < int64(len(keys)*conns) {
			if time.Now().After(deadline) {
				t.Fatalf("the pool did not import every key on every connection:\n%s", d.proc.Tail(20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	synced(enc)
	signEach(t, hc, d, keys[:4])       // every request leaves its deadline set
	time.Sleep(500 * time.Millisecond) // their log lines flushed (buffered 100 ms)
	before := readLink(t, enc, d, hc)

	time.Sleep(idle)

	after := readLink(t, enc, d, hc)
	if after != before {
		t.Fatalf("the idle link was not free over %v (%d x rpc_timeout):\nbefore %+v\nafter  %+v\ndaemon log:\n%s", idle, int(idle/rpcTimeout), before, after, d.proc.Tail(20))
	}
	t.Logf("idle %v with %d keys, %d connections, rpc_timeout %v: %+v", idle, len(keys), conns, rpcTimeout, after)

	// A real restart: every expiry crossed.
	enc.Kill()
	enc, _ = startEnclave(t, enclaveBin, port, kmsPath)
	synced(enc)
	deadline := time.Now().Add(30 * time.Second)
	for st, _, _ := getStatus(hc, d.utility+"/healthz"); st != http.StatusOK; st, _, _ = getStatus(hc, d.utility+"/healthz") {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz not 200 after the restart:\n%s", d.proc.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(idle) // more than every timeout again: nothing more happens
	st := enclaveStats(t, enc)
	want := int64(len(keys) * conns)
	if st["accepted"] != conns || st["requests_initialize"] != conns || st["requests_import"] != want || st["kms_calls"] != want {
		t.Errorf("after one restart the new enclave saw %d connections, %d Initialize, %d Import, %d KMS calls; want %d, %d, %d, %d",
			st["accepted"], st["requests_initialize"], st["requests_import"], st["kms_calls"], conns, conns, want, want)
	}
	log := d.proc.Log()
	if n := strings.Count(log, "enclave connection lost; redialling"); n != 1 {
		t.Errorf("the daemon logged the loss %d times, want once:\n%s", n, d.proc.Tail(20))
	}
	if n := strings.Count(log, "enclave connection restored"); n != 1 {
		t.Errorf("the daemon logged the recovery %d times, want once:\n%s", n, d.proc.Tail(20))
	}
	signEach(t, hc, d, keys[:4])
	if got := enclaveStats(t, enc)["requests_import"]; got != want {
		t.Errorf("signing after the restart imported again: %d Imports, want %d", got, want)
	}
}

// tz4Attestation is a tz4 attestation (tag 41) at level on the test chain.
func tz4Attestation(level int32) []byte {
	b := []byte{0x13, 0x7a, 0x06, 0xa7, 0x70}
	for i := range 32 {
		b = append(b, byte(7*i+1))
	}
	b = append(b, 41)
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, 0)
	for i := range 32 {
		b = append(b, byte(11*i+5))
	}
	return b
}

// attestationFor is an attestation at level in the form key k signs.
func attestationFor(k key, level int32) []byte {
	if k.pk.Type == tezos.BLS {
		return tz4Attestation(level)
	}
	return loadgen.Attestation([]byte{0x7a, 0x06, 0xa7, 0x70}, 1, level, 0)
}

// TestHostileRepliesNeverSignedNorRecorded puts a misbehaving proxy between
// the daemon (file watermarks) and the enclave. For each fault — a stale
// reply, a duplicated reply, a reply for another key, wrong signature
// bytes, an extra frame mid-request — on attestations of every key type:
// the client never gets a 200 with a signature that does not verify
// (checked with crypto/ed25519, crypto/ecdsa, decred secp256k1, blst), the
// baker's identical retry is signed (never refused by a mark the fault
// left), signing recovers on the next level, and no mark on disk holds a
// signature that does not verify for the message of its level.
func TestHostileRepliesNeverSignedNorRecorded(t *testing.T) {
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	sigilBin := harness.BuildBinary(t, "./cmd/sigil")
	dir := t.TempDir()
	kmsPath, keysPath := filepath.Join(dir, "enclave-kms.key"), filepath.Join(dir, "keys.json")
	keys := writeKeys(t, kmsPath, keysPath, tezos.Ed25519, tezos.Secp256k1, tezos.P256, tezos.BLS,
		tezos.Ed25519, tezos.Secp256k1, tezos.P256, tezos.BLS)
	enc := harness.StartEnclave(t, harness.EnclaveOptions{Binary: enclaveBin, KMSKeyFile: kmsPath})
	proxy := enclavetest.StartProxy(t, enc.Addr())
	_, proxyPort, _ := strings.Cut(proxy.Addr, ":")
	pp, _ := strconv.Atoi(proxyPort)
	d := startDaemon(t, sigilBin, linkConfig(t, dir, pp, keysPath, "2s", "file", 2, keys))
	hc := newHTTPClient()

	sent := map[string]map[int32][]byte{} // key → level → message
	level := int32(100)
	var refused, fine int
	attest := func(k key, lvl int32) signResult {
		msg := attestationFor(k, lvl)
		if sent[k.pkh] == nil {
			sent[k.pkh] = map[int32][]byte{}
		}
		sent[k.pkh][lvl] = msg
		r := sign(hc, d.api, k.pkh, msg)
		if r.err != nil {
			t.Fatalf("%s level %d: %v", k.pkh, lvl, r.err)
		}
		if r.status == http.StatusOK {
			sig, err := tezos.ParseSignature(r.sig)
			if err == nil {
				err = enclavetest.Verify(k.pk, msg, sig, tezos.SignVersionLatest)
			}
			if err != nil {
				t.Fatalf("%s level %d: a 200 with a signature that does not verify: %v", k.pkh, lvl, err)
			}
		}
		return r
	}
	for _, f := range enclavetest.Faults {
		for _, k := range keys[:4] {
			level++
			if r := attest(k, level); r.status != http.StatusOK {
				t.Fatalf("%v, %v key, before the fault: %d %q", f, k.pk.Type, r.status, r.msg)
			}
			level++
			applied := proxy.Applied()
			proxy.Arm(f, 1)
			r := attest(k, level)
			if proxy.Applied() != applied+1 {
				t.Fatalf("%v: the fault was not applied", f)
			}
			switch {
			case r.status == http.StatusOK:
				fine++ // found before it mattered (duplicate) or retried elsewhere (wrong type)
			case r.status == http.StatusServiceUnavailable && r.msg != "":
				refused++
			default:
				t.Fatalf("%v, %v key: %d %q, want 200 with a valid signature or 503", f, k.pk.Type, r.status, r.msg)
			}
			// The baker's identical retry: signed, never refused as below
			// a mark.
			if r := attest(k, level); r.status != http.StatusOK {
				t.Fatalf("%v, %v key: the identical retry got %d %q", f, k.pk.Type, r.status, r.msg)
			}
			level++
			if r := attest(k, level); r.status != http.StatusOK {
				t.Fatalf("%v, %v key: after the fault, the next level got %d %q", f, k.pk.Type, r.status, r.msg)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no hostile reply was refused: the faults did not reach the daemon")
	}
	t.Logf("%d hostile replies refused with 503, %d absorbed (200, verified)", refused, fine)
	log := d.proc.Log()
	if n := strings.Count(log, "enclave returned an invalid signature"); n == 0 || n > refused {
		t.Errorf("%d error lines for invalid signatures, %d refusals", n, refused)
	}
	// The duplicated reply waits on its connection until the next request
	// on it, or the idle probe, finds it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.proc.Log(), "enclave connection poisoned") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(d.proc.Log(), "enclave connection poisoned") {
		t.Errorf("no duplicated or extra reply was found waiting on a connection:\n%s", d.proc.Tail(30))
	}
	if n := metric(t, hc, d.utility, "sigil_enclave_bad_signatures_total"); n == 0 {
		t.Error("sigil_enclave_bad_signatures_total did not count")
	}

	// Every mark on disk holds a signature that verifies for the message of
	// its level.
	files, err := filepath.Glob(filepath.Join(dir, "watermark_v2", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no watermark file: %v", err)
	}
	marks := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var byKey map[string]map[string]struct {
			Level     int32  `json:"level"`
			Signature string `json:"signature"`
		}
		if err := json.Unmarshal(raw, &byKey); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for pkh, kinds := range byKey {
			var k key
			for _, kk := range keys {
				if kk.pkh == pkh {
					k = kk
				}
			}
			for kind, m := range kinds {
				msg := sent[pkh][m.Level]
				sig, err := tezos.ParseSignature(m.Signature)
				if err == nil {
					err = enclavetest.Verify(k.pk, msg, sig, tezos.SignVersionLatest)
				}
				if msg == nil || err != nil {
					t.Errorf("the %s mark of %s at level %d holds a signature that does not verify: %v", kind, pkh, m.Level, err)
				}
				marks++
			}
		}
	}
	if marks != 4 {
		t.Errorf("%d marks on disk, want one attestation mark per key used (4)", marks)
	}
}

// runCLI runs `sigil ARGS` and returns its stdout, stderr and exit error.
func runCLI(t *testing.T, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestCLIEnclaveDownFailsFast: with nothing listening at the enclave's
// address, `sigil list` and `sigil generate` end within seconds (their
// --timeout is a minute) with one line naming the cause, not one per key.
func TestCLIEnclaveDownFailsFast(t *testing.T) {
	sigilBin := harness.BuildBinary(t, "./cmd/sigil")
	dir := t.TempDir()
	kmsPath, keysPath := filepath.Join(dir, "enclave-kms.key"), filepath.Join(dir, "keys.json")
	var types []tezos.KeyType
	for range 60 {
		types = append(types, tezos.Ed25519)
	}
	keys := writeKeys(t, kmsPath, keysPath, types...)
	port := harness.FreePort(t) // nothing listens there
	cfg := linkConfig(t, dir, port, keysPath, "10s", "mem", 4, keys)
	for _, args := range [][]string{{"list"}, {"generate", "-t", "tz1"}} {
		start := time.Now()
		out, errOut, err := runCLI(t, sigilBin, append([]string{"-c", cfg, "--timeout", "60s"}, args...)...)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("sigil %s succeeded with the enclave down: %s", args[0], out)
		}
		if took > 5*time.Second {
			t.Errorf("sigil %s took %v with the enclave down (want at most 5 s)", args[0], took.Round(time.Millisecond))
		}
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		naming := 0
		for _, l := range lines {
			if strings.Contains(l, "connection refused") {
				naming++
			}
		}
		if naming != 1 || len(lines) > 3 {
			t.Errorf("sigil %s: %d lines, %d naming the cause (want one):\n%s", args[0], len(lines), naming, errOut)
		}
		if strings.Contains(errOut, "deadline exceeded") {
			t.Errorf("sigil %s reports a timeout, not the cause:\n%s", args[0], errOut)
		}
		t.Logf("sigil %s with the enclave down: %v, stderr:\n%s", args[0], took.Round(time.Millisecond), errOut)
	}
}
