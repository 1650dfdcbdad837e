package signatorydiff

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// hookServer is the policy hook both daemons call (one server, one URL in
// the shared configuration). Its reply is set per case (begin) and what it
// received is summarised (end), so that the two daemons' hook requests are
// compared too.
type hookServer struct {
	url string
	e   *env

	mu    sync.Mutex
	mode  string
	calls []string
}

func startHook(t *testing.T, e *env) *hookServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookServer{url: "http://" + l.Addr().String() + "/hook", e: e}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hookServer) begin(mode string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode, h.calls = mode, nil
}

// end returns what the hook received since begin: "" when the case set no
// mode, "not called", or one summary per call.
func (h *hookServer) end() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mode == "" {
		return ""
	}
	if len(h.calls) == 0 {
		return "not called"
	}
	return strings.Join(h.calls, "; ")
}

// The request and reply formats (Signatory's pkg/signatory/policy_hook.go):
// byte fields are base64 in JSON.
type hookRequest struct {
	Request       []byte `json:"request"`
	Source        string `json:"source"`
	ClientKeyHash string `json:"client_key_hash,omitempty"`
	PublicKeyHash string `json:"public_key_hash"`
	Nonce         []byte `json:"nonce"`
}

type hookPayload struct {
	Status        int    `json:"status"`
	Error         string `json:"error,omitempty"`
	PublicKeyHash string `json:"public_key_hash"`
	Nonce         []byte `json:"nonce"`
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	mode := h.mode
	h.mu.Unlock()
	var raw map[string]json.RawMessage
	var req hookRequest
	dec := json.NewDecoder(r.Body)
	summary := ""
	if err := dec.Decode(&raw); err != nil {
		summary = "undecodable request: " + err.Error()
	} else {
		b, _ := json.Marshal(raw)
		_ = json.Unmarshal(b, &req)
		var fields []string
		for k := range raw {
			fields = append(fields, k)
		}
		slices.Sort(fields)
		summary = fmt.Sprintf("%s %s key=%s client=%s source=%s request=%s nonce=%dB fields=%s",
			r.Method, r.Header.Get("Content-Type"), h.e.name(req.PublicKeyHash), orNone(h.e.name(req.ClientKeyHash)),
			req.Source, shortHex(req.Request), len(req.Nonce), strings.Join(fields, ","))
	}
	h.mu.Lock()
	h.calls = append(h.calls, summary)
	h.mu.Unlock()

	signed := func(status int, pl hookPayload, signer string, tamper func(*[]byte, *string)) {
		if pl.Nonce == nil {
			pl.Nonce = req.Nonce
		}
		if pl.PublicKeyHash == "" {
			pl.PublicKeyHash = h.e.c.key(signer).PKH
		}
		payload, _ := json.Marshal(pl)
		sk, err := tezos.ParsePrivateKey(h.e.c.key(signer).SK)
		if err != nil {
			panic(err)
		}
		sig, err := sk.Sign(payload, tezos.SignVersion2)
		sk.Zero()
		if err != nil {
			panic(err)
		}
		s := sig.String()
		if tamper != nil {
			tamper(&payload, &s)
		}
		reply, _ := json.Marshal(struct {
			Payload   json.RawMessage `json:"payload"`
			Signature string          `json:"signature"`
		}{payload, s})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(reply)
	}
	switch mode {
	case "approve", "":
		w.WriteHeader(http.StatusOK)
	case "refuse":
		w.WriteHeader(http.StatusForbidden)
	case "fail":
		w.WriteHeader(http.StatusInternalServerError)
	case "signed-approve":
		signed(http.StatusOK, hookPayload{Status: http.StatusOK}, "hook", nil)
	case "signed-refuse":
		signed(http.StatusForbidden, hookPayload{Status: http.StatusForbidden, Error: "refused by the test hook"}, "hook", nil)
	case "signed-fail":
		signed(http.StatusInternalServerError, hookPayload{Status: http.StatusInternalServerError, Error: "hook failure"}, "hook", nil)
	case "signed-by-stranger":
		signed(http.StatusOK, hookPayload{Status: http.StatusOK}, "client-c", nil)
	case "signed-bad-signature":
		signed(http.StatusOK, hookPayload{Status: http.StatusOK}, "hook", func(p *[]byte, _ *string) {
			*p = []byte(strings.Replace(string(*p), `"status":200`, `"status":200 `, 1))
		})
	case "signed-wrong-nonce":
		signed(http.StatusOK, hookPayload{Status: http.StatusOK, Nonce: make([]byte, 32)}, "hook", nil)
	case "signed-status-mismatch":
		signed(http.StatusOK, hookPayload{Status: http.StatusForbidden}, "hook", nil)
	case "signed-garbage-signature":
		signed(http.StatusOK, hookPayload{Status: http.StatusOK}, "hook", func(_ *[]byte, s *string) { *s = "notasignature" })
	default:
		panic("unknown hook mode " + mode)
	}
}

func shortHex(b []byte) string {
	if len(b) == 0 {
		return "empty"
	}
	h := hex.EncodeToString(b)
	if len(h) > 16 {
		h = h[:16] + "…"
	}
	return fmt.Sprintf("%s(%dB)", h, len(b))
}
