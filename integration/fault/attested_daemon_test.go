package fault

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// attestedDaemonConfig writes writeConfig's configuration for the enclave
// m with its attested_channel section (the fake issuer's CA, the daemon
// key StartAttested made).
func attestedDaemonConfig(t *testing.T, m *enclavetest.Mock, dir, keysPath string, keys []key) string {
	t.Helper()
	_, portS, _ := net.SplitHostPort(m.Addr)
	port, _ := strconv.Atoi(portS)
	path := writeConfig(t, dir, port, keysPath, "5s", keys)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Attested.Settings
	section := fmt.Sprintf("      attested_channel:\n        client_key_file: %s\n        image_digests: [%s]\n        issuer: %s\n        issuer_ca_file: %s\n        leeway: %s\n",
		s.ClientKeyFile, s.ImageDigests[0], s.Issuer, s.IssuerCAFile, s.Leeway)
	text := strings.Replace(string(raw), "      storage:\n", section+"      storage:\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAttestDaemonProcess runs the sigil binary against an in-process
// enclave on the attested channel: `sigil config check` accepts the
// section; with a genuine enclave the daemon loads its keys and signs
// (over the channel: the enclave answered AttestationToken); with an
// enclave of another image digest the daemon starts, /healthz and a
// signing request give the refused claim, the log gives it once however
// many attempts fail, and no request reaches the enclave.
func TestAttestDaemonProcess(t *testing.T) {
	bin := harness.BuildBinary(t, "./cmd/sigil")
	hc := newHTTPClient()

	t.Run("genuine", func(t *testing.T) {
		m := enclavetest.StartAttested(t, enclavetest.AttestedOptions{})
		dir := t.TempDir()
		keysPath := filepath.Join(dir, "keys.json")
		keys := writeKeys(t, m.KMSFile, keysPath, tezos.Ed25519, tezos.BLS)
		cfg := attestedDaemonConfig(t, m, dir, keysPath, keys)
		if out, errOut, err := runCLI(t, bin, "-c", cfg, "config", "check"); err != nil {
			t.Fatalf("config check: %v\n%s%s", err, out, errOut)
		}
		d := startDaemon(t, bin, cfg)
		for _, k := range keys {
			r := sign(hc, d.api, k.pkh, transaction)
			if r.status != 200 {
				t.Fatalf("sign with %s: %d %s %v\n%s", k.pkh, r.status, r.msg, r.err, d.proc.Tail(20))
			}
			if err := verify(k.pk, transaction, r.sig); err != nil {
				t.Fatal(err)
			}
		}
		if n := m.Stats().Requests["AttestationToken"]; n == 0 {
			t.Fatal("the daemon did not talk the attested channel")
		}
	})

	t.Run("another image digest", func(t *testing.T) {
		m := enclavetest.StartAttested(t, enclavetest.AttestedOptions{Workload: func(w *attestationtest.Workload) {
			w.ImageDigest = "sha256:" + strings.Repeat("ab", 32)
		}})
		dir := t.TempDir()
		keysPath := filepath.Join(dir, "keys.json")
		keys := writeKeys(t, m.KMSFile, keysPath, tezos.Ed25519)
		cfg := attestedDaemonConfig(t, m, dir, keysPath, keys)
		h := harness.StartDaemon(t, harness.DaemonOptions{Binary: bin, Config: cfg, Listening: true})
		want := "claim " + attestation.ClaimImageDigest + ":"
		var body string
		deadline := time.Now().Add(20 * time.Second)
		for {
			status, b, err := getStatus(hc, h.Utility+"/healthz")
			body = b
			if err == nil && status != 200 && strings.Contains(b, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz never named the claim (status %d, %v): %s\n%s", status, err, b, h.Tail(20))
			}
			time.Sleep(50 * time.Millisecond)
		}
		r := sign(hc, h.API, keys[0].pkh, transaction)
		if r.status == 200 || !strings.Contains(r.msg, want) {
			t.Errorf("sign: %d %q, want a refusal naming %s", r.status, r.msg, want)
		}
		// Several refused handshakes, one log line.
		for time.Now().Before(deadline) && m.Stats().HandshakesRefused < 6 {
			time.Sleep(50 * time.Millisecond)
		}
		if n := m.Stats().HandshakesRefused; n < 6 {
			t.Fatalf("%d handshakes refused", n)
		}
		// Each component that reports the state (the enclave pool, the key
		// loader) says it once; the refused request's own line aside.
		logged := map[string]int{}
		for _, l := range strings.Split(h.Log(), "\n") {
			if strings.Contains(l, want) && !strings.Contains(l, `msg="request failed"`) {
				msg, _, _ := strings.Cut(l[strings.Index(l, "msg="):], `" `)
				logged[msg]++
			}
		}
		if len(logged) == 0 {
			t.Errorf("the refusal is not logged:\n%s", h.Tail(30))
		}
		for msg, n := range logged {
			if n != 1 {
				t.Errorf("%s: logged %d times, want once:\n%s", msg, n, h.Tail(30))
			}
		}
		for method, n := range m.Stats().Requests {
			if n != 0 {
				t.Errorf("%d %s requests reached the refused enclave", n, method)
			}
		}
		t.Logf("/healthz: %s", strings.TrimSpace(body))
	})
}
