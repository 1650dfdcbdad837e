package auth

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// hookRequest is what the daemon POSTs, decoded as a hook written against
// Signatory's PolicyHookRequest decodes it.
type hookRequest struct {
	Request       []byte `json:"request"`
	Source        string `json:"source"`
	ClientKeyHash string `json:"client_key_hash,omitempty"`
	PublicKeyHash string `json:"public_key_hash"`
	Nonce         []byte `json:"nonce"`
}

// hookPayload is Signatory's PolicyHookReplyPayload.
type hookPayload struct {
	Status        int    `json:"status"`
	Error         string `json:"error"`
	PublicKeyHash string `json:"public_key_hash"`
	Nonce         []byte `json:"nonce"`
}

// testHook is a policy service whose behaviour the test switches.
type testHook struct {
	t        *testing.T
	key      tezos.PrivateKey // listed in policy_hook.authorized_keys
	imposter tezos.PrivateKey // not listed
	release  chan struct{}    // closed at the end: unblocks the slow mode
	mu       sync.Mutex
	mode     string
	seen     []hookRequest
}

func (h *testHook) setMode(m string) {
	h.mu.Lock()
	h.mode = m
	h.mu.Unlock()
}

func (h *testHook) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.seen...)
}

// reply writes an authenticated reply signed by sk.
func (h *testHook) reply(w http.ResponseWriter, code int, sk tezos.PrivateKey, pl hookPayload) {
	raw, err := json.Marshal(&pl)
	if err != nil {
		panic(err)
	}
	sig, err := sk.Sign(raw, tezos.SignVersion2)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"payload":%s,"signature":%q}`, raw, sig.String())
}

func (h *testHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req hookRequest
	if r.Method != http.MethodPost || json.Unmarshal(body, &req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.seen = append(h.seen, req)
	mode := h.mode
	h.mu.Unlock()
	pub, _ := h.key.Public()
	imp, _ := h.imposter.Public()
	ok := hookPayload{Status: 200, PublicKeyHash: pub.Hash().String(), Nonce: req.Nonce}
	switch mode {
	case "allow":
		h.reply(w, 200, h.key, ok)
	case "refuse":
		h.reply(w, 403, h.key, hookPayload{Status: 403, Error: "denied by the test hook", PublicKeyHash: ok.PublicKeyHash, Nonce: req.Nonce})
	case "slow":
		// Until the daemon gives up (it closes the connection) or the
		// test ends.
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		h.reply(w, 200, h.key, ok)
	case "unlisted key":
		h.reply(w, 200, h.imposter, hookPayload{Status: 200, PublicKeyHash: imp.Hash().String(), Nonce: req.Nonce})
	case "forged signature":
		h.reply(w, 200, h.imposter, ok)
	case "wrong nonce":
		h.reply(w, 200, h.key, hookPayload{Status: 200, PublicKeyHash: ok.PublicKeyHash, Nonce: make([]byte, 32)})
	case "status mismatch":
		h.reply(w, 200, h.key, hookPayload{Status: 403, PublicKeyHash: ok.PublicKeyHash, Nonce: req.Nonce})
	case "garbage":
		_, _ = w.Write([]byte("<html>approved</html>"))
	case "plain 204":
		w.WriteHeader(http.StatusNoContent)
	case "plain 403":
		http.Error(w, "no", http.StatusForbidden)
	default:
		http.Error(w, "unknown mode", http.StatusInternalServerError)
	}
}

// verifyScript checks signatures with @taquito/utils.
const verifyScript = `
const { verifySignature } = require('@taquito/utils');
return input.map((c) => verifySignature(c.msg, c.pk, c.sig));`

// forgeScript forges a transaction from a key with Taquito's LocalForger.
const forgeScript = `
const { LocalForger } = require('@taquito/local-forging');
return await new LocalForger().forge({
  branch: input.branch,
  contents: [{ kind: 'transaction', source: input.pkh, fee: '1420', counter: '7',
    gas_limit: '1521', storage_limit: '0', amount: '1000000', destination: input.destination }],
});`

func TestPolicyHookEndToEnd(t *testing.T) {
	e := newEnv(t)
	taquito.NodeModules(t)
	pkh := e.generate("tz1")
	hookSK, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	hookPK, _ := hookSK.Public()
	imposter, err := tezos.GeneratePrivateKey(tezos.P256, nil)
	require.NoError(t, err)
	hook := &testHook{t: t, key: hookSK, imposter: imposter, release: make(chan struct{})}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	defer close(hook.release)

	policy := fmt.Sprintf("tezos:\n  %s:\n    allow:\n      generic: [transaction]\n      attestation:\n", pkh)
	cfg := e.writeConfig("", fmt.Sprintf(`policy_hook:
  address: %s/policy
  authorized_keys: [%s]
  timeout: 1s
%s`, srv.URL, hookPK, policy))
	d := e.start(cfg)
	pk := send(t, "GET", d.url+"/keys/"+pkh, "")
	require.Equal(t, http.StatusOK, pk.status, pk.body)
	var pkBody struct {
		PublicKey string `json:"public_key"`
	}
	require.NoError(t, json.Unmarshal([]byte(pk.body), &pkBody))

	var forged string
	taquito.Run(t, forgeScript, map[string]string{"branch": branch, "destination": destination, "pkh": pkh}, &forged)
	tx, err := hex.DecodeString("03" + forged)
	require.NoError(t, err)

	type verify struct {
		Msg string `json:"msg"`
		PK  string `json:"pk"`
		Sig string `json:"sig"`
	}
	var toVerify []verify
	sign := func(mode string, msg []byte) reply {
		t.Helper()
		hook.setMode(mode)
		r := send(t, "POST", d.url+"/keys/"+pkh, fmt.Sprintf("%q", hex.EncodeToString(msg)))
		if r.status == http.StatusOK {
			var out struct{ Signature string }
			require.NoError(t, json.Unmarshal([]byte(r.body), &out))
			toVerify = append(toVerify, verify{Msg: hex.EncodeToString(msg), PK: pkBody.PublicKey, Sig: out.Signature})
		}
		return r
	}

	// Approved: signed, and the hook saw Signatory's request.
	r := sign("allow", tx)
	require.Equal(t, http.StatusOK, r.status, r.body)
	seen := hook.requests()
	require.Len(t, seen, 1)
	assert.Equal(t, tx, seen[0].Request)
	assert.Equal(t, pkh, seen[0].PublicKeyHash)
	assert.Equal(t, "127.0.0.1", seen[0].Source)
	assert.Empty(t, seen[0].ClientKeyHash, "no client key authenticated the request")
	assert.Len(t, seen[0].Nonce, 32)

	// Refused (403, with the hook's reason); a refused consensus request
	// does not raise the watermark: a lower level still signs after it.
	r = sign("refuse", tx)
	assert.Equal(t, http.StatusForbidden, r.status, r.body)
	assert.Contains(t, r.errMsg(), "denied by the test hook")
	r = sign("refuse", attestation(20, 0))
	assert.Equal(t, http.StatusForbidden, r.status, r.body)
	r = sign("allow", attestation(15, 0))
	assert.Equal(t, http.StatusOK, r.status, "a refused attestation at level 20 moved the watermark: %s", r.body)

	// Badly signed or forged replies: 403, never a signature.
	for mode, want := range map[string]string{
		"unlisted key":     "not in policy_hook.authorized_keys",
		"forged signature": "invalid signature",
		"wrong nonce":      "nonce mismatch",
		"status mismatch":  "differs from the HTTP status",
	} {
		r = sign(mode, tx)
		assert.Equal(t, http.StatusForbidden, r.status, "%s: %s", mode, r.body)
		assert.Contains(t, r.errMsg(), want, mode)
	}

	// A hook that answers garbage, too late, or not at all: 500 (as
	// Signatory), never a signature; the daemon does not wait beyond the
	// configured timeout.
	r = sign("garbage", tx)
	assert.Equal(t, http.StatusInternalServerError, r.status, r.body)
	start := time.Now()
	r = sign("slow", attestation(16, 0))
	elapsed := time.Since(start)
	assert.Equal(t, http.StatusInternalServerError, r.status, r.body)
	assert.Contains(t, r.errMsg(), "did not answer within 1s")
	t.Logf("slow hook (timeout 1s): the daemon answered %d after %v", r.status, elapsed.Round(time.Millisecond))
	srv.Close()
	r = sign("allow", attestation(17, 0))
	assert.Equal(t, http.StatusInternalServerError, r.status, r.body)
	assert.Contains(t, r.errMsg(), "unreachable")
	assert.NotContains(t, r.body, strings.TrimPrefix(srv.URL, "http://"), "the hook's address reaches the client")

	// Without authorized_keys only the status counts (Signatory's
	// unauthenticated mode), and the daemon warns at start.
	d.proc.Stop()
	plain := httptest.NewServer(hook)
	defer plain.Close()
	cfg = e.writeConfig("", fmt.Sprintf("policy_hook:\n  address: %s\n%s", plain.URL, policy))
	d = e.start(cfg)
	assert.Contains(t, d.proc.Log(), "policy hook without authorized_keys")
	r = sign("plain 204", tx)
	assert.Equal(t, http.StatusOK, r.status, r.body)
	r = sign("plain 403", tx)
	assert.Equal(t, http.StatusForbidden, r.status, r.body)

	// Every signature the daemon gave verifies (Taquito).
	require.Len(t, toVerify, 3)
	var verified []bool
	taquito.Run(t, verifyScript, toVerify, &verified)
	assert.Equal(t, []bool{true, true, true}, verified)
}
