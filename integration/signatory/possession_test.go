package signatory_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// signedHook is a policy service with signed replies (Signatory's
// PolicyHookReply) that approves or refuses, and keeps what it was asked.
type signedHook struct {
	key tezos.PrivateKey
	mu  sync.Mutex
	ok  bool
	got []map[string]any
}

func (h *signedHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req map[string]any
	if json.Unmarshal(body, &req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.got = append(h.got, req)
	ok := h.ok
	h.mu.Unlock()
	pk, _ := h.key.Public()
	status, reason := http.StatusOK, ""
	if !ok {
		status, reason = http.StatusForbidden, "refused by the test hook"
	}
	payload, _ := json.Marshal(map[string]any{"status": status, "error": reason, "public_key_hash": pk.Hash().String(), "nonce": req["nonce"]})
	sig, _ := h.key.Sign(payload, tezos.SignVersion2)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"payload":%s,"signature":%q}`, payload, sig.String())
}

func (h *signedHook) set(ok bool) {
	h.mu.Lock()
	h.ok = ok
	h.mu.Unlock()
}

func (h *signedHook) requests() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.got...)
}

// TestProofOfPossessionEndToEnd runs `sigil serve` with
// server.authorized_keys and a policy hook with signed replies, and asks
// for a proof of possession of a tz4 key as Signatory authenticates it: the
// client signs 0x04 0x01 ‖ the key's tagged hash (no message). Without
// authentication 401, with garbage 400, signed by a client not in the list
// 403; authenticated, the hook is consulted (request null, the client's
// key hash) and its refusal is no proof; approved, the proof verifies.
func TestProofOfPossessionEndToEnd(t *testing.T) {
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	dir := t.TempDir()
	var reqs []stateRequest
	readJSON(t, filepath.Join("testdata", "signatory-state", "requests.json"), &reqs)
	var tz4 string
	for _, r := range reqs {
		if strings.HasPrefix(r.Key, "tz4") {
			tz4 = r.Key
		}
	}
	h, err := tezos.ParsePublicKeyHash(tz4)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join("testdata", "signatory-state", "secret.json"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "secret.json")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	client, stranger, hookKey := newTestKey(t, tezos.Ed25519), newTestKey(t, tezos.Secp256k1), newTestKey(t, tezos.Ed25519)
	hook := &signedHook{key: hookKey.sk, ok: true}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	cfg := fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
  authorized_keys: [%s]
policy_hook:
  address: %s
  authorized_keys: [%s]
vaults:
  local:
    driver: file
    config:
      file: %s
tezos:
  %s:
    allow_proof_of_possession: true
`, filepath.Join(dir, "base"), client.pk, hookSrv.URL, hookKey.pk, keyFile, tz4)
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := harness.StartDaemon(t, harness.DaemonOptions{Binary: sigil, Config: cfgPath})
	pk, err := tezos.ParsePublicKey(getPublicKey(t, d.API, tz4))
	if err != nil {
		t.Fatal(err)
	}
	authBy := func(k testKey) string {
		sig, err := k.sk.Sign(signer.AuthenticationData(h, nil), tezos.SignVersion2)
		if err != nil {
			t.Fatal(err)
		}
		return "?authentication=" + url.QueryEscape(sig.String())
	}
	get := func(query string) (int, string) {
		t.Helper()
		resp, err := httpClient.Get(d.API + "/bls_prove_possession/" + tz4 + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		name, query string
		want        int
	}{
		{"no authentication", "", http.StatusUnauthorized},
		{"garbage authentication", "?authentication=edsigNotASignature", http.StatusBadRequest},
		{"client not in authorized_keys", authBy(stranger), http.StatusForbidden},
	} {
		if status, body := get(c.query); status != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, status, c.want, body)
		}
	}
	if n := len(hook.requests()); n != 0 {
		t.Errorf("the hook was asked %d times for unauthenticated requests", n)
	}

	hook.set(false)
	if status, body := get(authBy(client)); status == http.StatusOK {
		t.Errorf("refused by the hook: status 200 (%s)", body)
	}
	hook.set(true)
	status, body := get(authBy(client))
	if status != http.StatusOK {
		t.Fatalf("authenticated and approved: status %d (%s)", status, body)
	}
	var out struct {
		Proof string `json:"bls_prove_possession"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	proof, err := tezos.ParseSignature(out.Proof)
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.VerifyPossession(proof); err != nil {
		t.Errorf("the proof does not verify: %v", err)
	}
	got := hook.requests()
	if len(got) != 2 {
		t.Fatalf("the hook was asked %d times, want 2", len(got))
	}
	for _, r := range got {
		if r["request"] != nil || r["public_key_hash"] != tz4 || r["client_key_hash"] != client.addr {
			t.Errorf("hook request %v: want request null, public_key_hash %s, client_key_hash %s", r, tz4, client.addr)
		}
	}
	// Counted as Signatory counts them.
	samples := scrapeSamples(t, d.Utility+"/metrics")
	for _, status := range []string{"401", "400", "403"} {
		if !hasSample(samples, "authentication_failure_total", map[string]string{"auth_method": "authentication", "status": status, "client_ip": "127.0.0.1"}) {
			t.Errorf("no authentication_failure_total with status %s", status)
		}
	}
	if !hasSample(samples, "policy_violation_total", map[string]string{"violation_type": "policy_hook", "operation_type": "request", "address": tz4}) {
		t.Error("the hook's refusal is not counted as policy_violation_total{violation_type=\"policy_hook\"}")
	}
	d.Stop()
}
