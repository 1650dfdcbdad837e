package policyhook_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/policyhook"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// signatoryRequest mirrors Signatory's PolicyHookRequest, as a hook written
// against Signatory decodes it.
type signatoryRequest struct {
	Request       []byte `json:"request"`
	Source        string `json:"source"`
	ClientKeyHash string `json:"client_key_hash,omitempty"`
	PublicKeyHash string `json:"public_key_hash"`
	Nonce         []byte `json:"nonce"`
}

func genKey(t *testing.T, typ tezos.KeyType) (tezos.PrivateKey, tezos.PublicKey) {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(typ, nil)
	require.NoError(t, err)
	pk, err := sk.Public()
	require.NoError(t, err)
	return sk, pk
}

var (
	signKey, _   = tezos.ParsePublicKeyHash("tz1burnburnburnburnburnburnburjAYjjX")
	clientKey, _ = tezos.ParsePublicKeyHash("tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx")
	message      = []byte{0x03, 1, 2, 3, 4, 5, 0xff}
)

func hookRequest() ports.HookRequest {
	return ports.HookRequest{Message: message, Source: "192.0.2.10", PKH: signKey, ClientKeyHash: clientKey}
}

// replyFunc answers one decoded request.
type replyFunc func(w http.ResponseWriter, req signatoryRequest)

// server is a test hook recording what it receives.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	raw   [][]byte
	reply replyFunc
}

func newServer(t *testing.T, reply replyFunc) *server {
	s := &server{reply: reply}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.raw = append(s.raw, body)
		s.mu.Unlock()
		var req signatoryRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.reply(w, req)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.raw)
}

func newHook(t *testing.T, url string, keys []tezos.PublicKey, timeout time.Duration) *policyhook.Hook {
	t.Helper()
	h, err := policyhook.New(policyhook.Config{Address: url, AuthorizedKeys: keys, Timeout: timeout})
	require.NoError(t, err)
	return h
}

// signed answers with an authenticated reply: payload pl (marshalled, or
// raw if given) signed by sk, under HTTP status code.
func signed(t *testing.T, w http.ResponseWriter, code int, sk tezos.PrivateKey, pl policyhook.ReplyPayload, raw []byte) {
	if raw == nil {
		var err error
		raw, err = json.Marshal(&pl)
		require.NoError(t, err)
	}
	sig, err := sk.Sign(raw, tezos.SignVersion2)
	require.NoError(t, err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&policyhook.Reply{Payload: raw, Signature: sig.String()})
}

func expectKind(t *testing.T, err error, kind domain.Kind, want string) {
	t.Helper()
	require.Error(t, err, "the hook must not approve")
	assert.Equal(t, kind, domain.KindOf(err), "%v", err)
	assert.Contains(t, err.Error(), want)
	assert.False(t, errors.Is(err, context.DeadlineExceeded), "a hook timeout must not read as the client's own")
}

func TestRequestIsSignatorysShape(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, _ signatoryRequest) { w.WriteHeader(http.StatusOK) })
	h := newHook(t, srv.URL, nil, 0)
	require.NoError(t, h.Approve(context.Background(), hookRequest()))
	req := hookRequest()
	req.ClientKeyHash = tezos.PublicKeyHash{}
	req.Source = ""
	require.NoError(t, h.Approve(context.Background(), req))

	raw := srv.requests()
	require.Len(t, raw, 2)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(raw[0], &fields))
	assert.ElementsMatch(t, []string{"request", "source", "client_key_hash", "public_key_hash", "nonce"}, keysOf(fields))
	assert.Equal(t, base64.StdEncoding.EncodeToString(message), fields["request"], "bytes are standard base64, as Go's encoding/json writes []byte")
	var got signatoryRequest
	require.NoError(t, json.Unmarshal(raw[0], &got))
	assert.Equal(t, message, got.Request)
	assert.Equal(t, "192.0.2.10", got.Source)
	assert.Equal(t, signKey.String(), got.PublicKeyHash)
	assert.Equal(t, clientKey.String(), got.ClientKeyHash)
	assert.Len(t, got.Nonce, policyhook.NonceSize)

	// Without a client key the field is left out (omitempty); the nonce
	// is fresh for every request.
	var second signatoryRequest
	fields = nil
	require.NoError(t, json.Unmarshal(raw[1], &fields))
	assert.ElementsMatch(t, []string{"request", "source", "public_key_hash", "nonce"}, keysOf(fields))
	require.NoError(t, json.Unmarshal(raw[1], &second))
	assert.NotEqual(t, got.Nonce, second.Nonce)
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestUnauthenticatedHook(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		code int
		kind domain.Kind // ignored when approved
		ok   bool
		want string
	}{
		{http.StatusOK, 0, true, ""},
		{http.StatusNoContent, 0, true, ""},
		{http.StatusForbidden, domain.KindForbidden, false, "refused the request: 403 Forbidden"},
		{http.StatusBadRequest, domain.KindForbidden, false, "refused the request: 400"},
		{http.StatusInternalServerError, domain.KindInternal, false, "answered 500"},
		{http.StatusServiceUnavailable, domain.KindInternal, false, "answered 503"},
		{http.StatusNotModified, domain.KindInternal, false, "redirects are not followed"},
	} {
		srv := newServer(t, func(w http.ResponseWriter, _ signatoryRequest) { w.WriteHeader(tc.code) })
		err := newHook(t, srv.URL, nil, 0).Approve(ctx, hookRequest())
		if tc.ok {
			require.NoError(t, err, "status %d", tc.code)
			continue
		}
		expectKind(t, err, tc.kind, tc.want)
	}

	// A redirect to an approving endpoint is not followed.
	approver := newServer(t, func(w http.ResponseWriter, _ signatoryRequest) { w.WriteHeader(http.StatusOK) })
	redirect := httptest.NewServer(http.RedirectHandler(approver.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	err := newHook(t, redirect.URL, nil, 0).Approve(ctx, hookRequest())
	expectKind(t, err, domain.KindInternal, "redirects are not followed")
	assert.Empty(t, approver.requests(), "the redirect target must not be asked")
}

func TestHookDownOrSlow(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	err := newHook(t, url, nil, 0).Approve(ctx, hookRequest())
	expectKind(t, err, domain.KindInternal, "unreachable")

	release := make(chan struct{})
	defer close(release)
	slow := newServer(t, func(w http.ResponseWriter, _ signatoryRequest) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	start := time.Now()
	err = newHook(t, slow.URL, nil, 200*time.Millisecond).Approve(ctx, hookRequest())
	expectKind(t, err, domain.KindInternal, "did not answer within 200ms")
	t.Logf("slow hook refused after %v", time.Since(start).Round(time.Millisecond))

	// A hook that sends its headers and then stalls in the body is
	// bounded the same way.
	_, pk := genKey(t, tezos.Ed25519)
	stall := newServer(t, func(w http.ResponseWriter, _ signatoryRequest) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"payload":`))
		w.(http.Flusher).Flush()
		<-release
	})
	err = newHook(t, stall.URL, []tezos.PublicKey{pk}, 200*time.Millisecond).Approve(ctx, hookRequest())
	expectKind(t, err, domain.KindInternal, "did not answer within")

	// The sign request's own cancellation is reported as such.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err = newHook(t, slow.URL, nil, time.Minute).Approve(cctx, hookRequest())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cancelled")
}

func TestAuthenticatedReplies(t *testing.T) {
	ctx := context.Background()
	hookSK, hookPK := genKey(t, tezos.Ed25519)
	_, otherPK := genKey(t, tezos.P256)
	strangerSK, strangerPK := genKey(t, tezos.Secp256k1)
	keys := []tezos.PublicKey{hookPK, otherPK}
	ok := func(req signatoryRequest, code int) policyhook.ReplyPayload {
		return policyhook.ReplyPayload{Status: code, PublicKeyHash: hookPK.Hash().String(), Nonce: req.Nonce}
	}
	var captured []byte // a valid reply to an earlier request, for the replay case
	for _, tc := range []struct {
		name  string
		reply replyFunc
		kind  domain.Kind
		want  string // empty: approved
	}{
		{"approved", func(w http.ResponseWriter, r signatoryRequest) { signed(t, w, 200, hookSK, ok(r, 200), nil) }, 0, ""},
		{"payload as received, whitespace included", func(w http.ResponseWriter, r signatoryRequest) {
			// encoding/json compacts a RawMessage it encodes, so the
			// body is written by hand to keep the payload's layout.
			raw, _ := json.MarshalIndent(ok(r, 200), "", "  ")
			sig, _ := hookSK.Sign(raw, 2)
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"payload": ` + string(raw) + `, "signature": "` + sig.String() + `"}`))
		}, 0, ""},
		{"payload reformatted after signing", func(w http.ResponseWriter, r signatoryRequest) {
			raw, _ := json.Marshal(ok(r, 200))
			sig, _ := hookSK.Sign(raw, 2)
			indented, _ := json.MarshalIndent(ok(r, 200), "", " ")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"payload": ` + string(indented) + `, "signature": "` + sig.String() + `"}`))
		}, domain.KindForbidden, "invalid signature"},
		{"refused with a reason", func(w http.ResponseWriter, r signatoryRequest) {
			pl := ok(r, 403)
			pl.Error = "amount too large\n\x1b[31m"
			signed(t, w, 403, hookSK, pl, nil)
		}, domain.KindForbidden, "policy hook refused the request: amount too large"},
		{"refused without a reason", func(w http.ResponseWriter, r signatoryRequest) { signed(t, w, 403, hookSK, ok(r, 403), nil) }, domain.KindForbidden, "403 Forbidden"},
		{"hook error 500", func(w http.ResponseWriter, r signatoryRequest) { signed(t, w, 500, hookSK, ok(r, 500), nil) }, domain.KindInternal, "answered 500"},
		{"nonce mismatch", func(w http.ResponseWriter, r signatoryRequest) {
			pl := ok(r, 200)
			pl.Nonce = make([]byte, 32)
			_, _ = rand.Read(pl.Nonce)
			signed(t, w, 200, hookSK, pl, nil)
		}, domain.KindForbidden, "nonce mismatch"},
		{"no nonce", func(w http.ResponseWriter, r signatoryRequest) {
			pl := ok(r, 200)
			pl.Nonce = nil
			signed(t, w, 200, hookSK, pl, nil)
		}, domain.KindForbidden, "nonce mismatch"},
		{"status mismatch: 200 in a 403", func(w http.ResponseWriter, r signatoryRequest) { signed(t, w, 403, hookSK, ok(r, 200), nil) }, domain.KindForbidden, "differs from the HTTP status"},
		{"status mismatch: 403 in a 200", func(w http.ResponseWriter, r signatoryRequest) { signed(t, w, 200, hookSK, ok(r, 403), nil) }, domain.KindForbidden, "differs from the HTTP status"},
		{"signed by an unlisted key", func(w http.ResponseWriter, r signatoryRequest) {
			pl := ok(r, 200)
			pl.PublicKeyHash = strangerPK.Hash().String()
			signed(t, w, 200, strangerSK, pl, nil)
		}, domain.KindForbidden, "not in policy_hook.authorized_keys"},
		{"names a listed key, signed by another", func(w http.ResponseWriter, r signatoryRequest) { signed(t, w, 200, strangerSK, ok(r, 200), nil) }, domain.KindForbidden, "invalid signature"},
		{"names the other listed key, signed by the first", func(w http.ResponseWriter, r signatoryRequest) {
			pl := ok(r, 200)
			pl.PublicKeyHash = otherPK.Hash().String()
			signed(t, w, 200, hookSK, pl, nil)
		}, domain.KindForbidden, "invalid signature"},
		{"payload altered after signing", func(w http.ResponseWriter, r signatoryRequest) {
			raw, _ := json.Marshal(ok(r, 200))
			sig, _ := hookSK.Sign(raw, 2)
			w.WriteHeader(200)
			pl := ok(r, 200)
			pl.Error = "x"
			altered, _ := json.Marshal(pl)
			_ = json.NewEncoder(w).Encode(&policyhook.Reply{Payload: altered, Signature: sig.String()})
		}, domain.KindForbidden, "invalid signature"},
		{"bad public key hash", func(w http.ResponseWriter, r signatoryRequest) {
			pl := ok(r, 200)
			pl.PublicKeyHash = "not-a-valid-pkh"
			signed(t, w, 200, hookSK, pl, nil)
		}, domain.KindForbidden, "public_key_hash"},
		{"bad signature string", func(w http.ResponseWriter, r signatoryRequest) {
			raw, _ := json.Marshal(ok(r, 200))
			w.WriteHeader(200)
			_ = json.NewEncoder(w).Encode(&policyhook.Reply{Payload: raw, Signature: "edsigNOPE"})
		}, domain.KindForbidden, "signature"},
		{"no payload", func(w http.ResponseWriter, r signatoryRequest) {
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"signature":"x"}`))
		}, domain.KindForbidden, "no payload"},
		{"payload of the wrong shape", func(w http.ResponseWriter, r signatoryRequest) {
			signed(t, w, 200, hookSK, policyhook.ReplyPayload{}, []byte(`{"status":"200"}`))
		}, domain.KindForbidden, "malformed payload"},
		{"plain 200 without a body", func(w http.ResponseWriter, r signatoryRequest) { w.WriteHeader(200) }, domain.KindInternal, "not the JSON object"},
		{"garbage", func(w http.ResponseWriter, r signatoryRequest) {
			w.WriteHeader(200)
			_, _ = w.Write([]byte("<html>ok</html>"))
		}, domain.KindInternal, "not the JSON object"},
		{"oversized reply", func(w http.ResponseWriter, r signatoryRequest) {
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"payload":"` + strings.Repeat("a", policyhook.MaxReply) + `"}`))
		}, domain.KindInternal, "exceeds"},
		{"capture", func(w http.ResponseWriter, r signatoryRequest) {
			rec := httptest.NewRecorder()
			signed(t, rec, 200, hookSK, ok(r, 200), nil)
			captured = rec.Body.Bytes()
			w.WriteHeader(200)
			_, _ = w.Write(captured)
		}, 0, ""},
		{"replay of an earlier valid reply", func(w http.ResponseWriter, r signatoryRequest) {
			w.WriteHeader(200)
			_, _ = w.Write(captured)
		}, domain.KindForbidden, "nonce mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.reply)
			err := newHook(t, srv.URL, keys, 0).Approve(ctx, hookRequest())
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			expectKind(t, err, tc.kind, tc.want)
			assert.NotContains(t, err.Error(), "\x1b", "control characters from the hook reach the client")
		})
	}
}

func TestEveryKeyTypeSignsReplies(t *testing.T) {
	for _, typ := range tezos.KeyTypes {
		sk, pk := genKey(t, typ)
		for _, version := range []uint8{tezos.SignVersion2, tezos.SignVersion1} {
			if version == tezos.SignVersion1 && typ != tezos.BLS {
				continue
			}
			srv := newServer(t, func(w http.ResponseWriter, r signatoryRequest) {
				raw, _ := json.Marshal(policyhook.ReplyPayload{Status: 200, PublicKeyHash: pk.Hash().String(), Nonce: r.Nonce})
				sig, err := sk.Sign(raw, version)
				require.NoError(t, err)
				w.WriteHeader(200)
				_ = json.NewEncoder(w).Encode(&policyhook.Reply{Payload: raw, Signature: sig.String()})
			})
			require.NoError(t, newHook(t, srv.URL, []tezos.PublicKey{pk}, 0).Approve(context.Background(), hookRequest()), "%v version %d", typ, version)
		}
	}
}

func TestAddress(t *testing.T) {
	for _, bad := range []string{"", "localhost:8080", "ftp://h/x", "http://", "/policy"} {
		_, err := policyhook.New(policyhook.Config{Address: bad})
		assert.ErrorContains(t, err, "policy_hook.address", bad)
	}
	_, err := policyhook.New(policyhook.Config{Address: "http://h", Timeout: -time.Second})
	assert.ErrorContains(t, err, "timeout")
}
