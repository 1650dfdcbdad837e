package httpapi_test

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/jwtauth"
	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// syncBuffer is a log output written by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logSetup is a JWT server logging in JSON (or text) at debug level.
func logSetup(t *testing.T, json bool) (*httptest.Server, tezos.PublicKey, *syncBuffer) {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	pk, _ := sk.Public()
	f := &fakeSigner{keys: map[string]tezos.PrivateKey{pk.Hash().String(): sk}}
	auth, err := jwtauth.New(map[string]jwtauth.User{
		"alice": {Credentials: jwtauth.Credentials{Password: alicePassword, Secret: aliceSecret}},
	}, jwtauth.Options{})
	require.NoError(t, err)
	out := &syncBuffer{}
	log := slog.New(logging.New(out, json, slog.LevelDebug))
	srv := httptest.NewServer(httpapi.New(f, httpapi.Options{Auth: auth, Logger: log}).Handler())
	t.Cleanup(srv.Close)
	return srv, pk, out
}

// TestRequestIDOnEveryAnswer: every answer carries X-Request-Id (success,
// 400, 401, 404, 405, 429): a fresh one, or the request's own when it is
// well formed.
func TestRequestIDOnEveryAnswer(t *testing.T) {
	srv, pk, _ := logSetup(t, true)
	tok := login(t, srv.URL)
	bearer := [][2]string{{"Authorization", "Bearer " + tok}, {"username", "alice"}}
	seen := map[string]bool{}
	for _, c := range []struct {
		name, method, path, body string
		headers                  [][2]string
		status                   int
	}{
		{"key", "GET", "/keys/" + pk.Hash().String(), "", bearer, 200},
		{"sign", "POST", "/keys/" + pk.Hash().String(), `"` + hex.EncodeToString([]byte{3, 1, 2}) + `"`, bearer, 200},
		{"bad body", "POST", "/keys/" + pk.Hash().String(), `"zz"`, bearer, 400},
		{"no token", "GET", "/keys/" + pk.Hash().String(), "", nil, 401},
		{"unknown path", "GET", "/nowhere", "", nil, 404},
		{"wrong method", "DELETE", "/keys/" + pk.Hash().String(), "", nil, 405},
		{"wrong password", "POST", "/login", "", [][2]string{{"username", "alice"}, {"password", "x"}}, 401},
	} {
		code, body, h := call(t, c.method, srv.URL+c.path, c.body, c.headers...)
		require.Equal(t, c.status, code, "%s: %s", c.name, body)
		id := h.Get(httpapi.RequestIDHeader)
		assert.Regexp(t, `^[0-9a-f]{32}$`, id, c.name)
		assert.False(t, seen[id], "%s: id %s given twice", c.name, id)
		seen[id] = true
	}
	// Past the per-address login allowance: 429, with an id too.
	var last http.Header
	for range 12 {
		var code int
		code, _, last = call(t, "POST", srv.URL+"/login", "", [2]string{"username", "alice"}, [2]string{"password", "x"})
		if code == http.StatusTooManyRequests {
			break
		}
	}
	assert.NotEmpty(t, last.Get("Retry-After"))
	assert.Regexp(t, `^[0-9a-f]{32}$`, last.Get(httpapi.RequestIDHeader))

	for id, kept := range map[string]bool{
		"0123456789abcdef0123456789abcdef":     true,
		"550e8400-e29b-41d4-a716-446655440000": true,
		"proxy.7f3a:42_x":                      true,
		"a":                                    true,
		strings.Repeat("a", httpapi.MaxRequestID):   true,
		strings.Repeat("a", httpapi.MaxRequestID+1): false,
		"with space":  false,
		"quote\"":     false,
		"semi;colon":  false,
		"new\nline":   false,
		"ta\tb":       false,
		"ünicode":     false,
		"equals=sign": false,
		"slash/x":     false,
		"<script>":    false,
	} {
		req, err := http.NewRequest("GET", srv.URL+"/nowhere", nil)
		require.NoError(t, err)
		req.Header[httpapi.RequestIDHeader] = []string{id}
		resp, err := http.DefaultClient.Do(req)
		if err != nil { // Go's client refuses some header values itself
			assert.False(t, kept, "%q: %v", id, err)
			continue
		}
		resp.Body.Close()
		got := resp.Header.Get(httpapi.RequestIDHeader)
		if kept {
			assert.Equal(t, id, got)
		} else {
			assert.NotEqual(t, id, got)
			assert.Regexp(t, `^[0-9a-f]{32}$`, got, "%q replaced by a fresh id", id)
		}
	}
	// Two ids: neither is taken.
	_, _, h := call(t, "GET", srv.URL+"/nowhere", "", [2]string{httpapi.RequestIDHeader, "a"}, [2]string{httpapi.RequestIDHeader, "b"})
	assert.Regexp(t, `^[0-9a-f]{32}$`, h.Get(httpapi.RequestIDHeader))
}

// TestRequestLinesJSONAndText: the lines about a request carry its id,
// the client's address and the milliseconds since it arrived (a float),
// in JSON and in text; a failed login names the user (shortened, and not
// at all when it looks like a secret key) and the address, never the
// password.
func TestRequestLinesJSONAndText(t *testing.T) {
	for _, js := range []bool{true, false} {
		srv, pk, out := logSetup(t, js)
		_, _, h := call(t, "POST", srv.URL+"/login", "", [2]string{"username", "alice"}, [2]string{"password", "Wrong-Passw0rd-123"})
		loginID := h.Get(httpapi.RequestIDHeader)
		tok := login(t, srv.URL)
		_, _, h = call(t, "POST", srv.URL+"/keys/"+pk.Hash().String(), `"zz"`, [2]string{"Authorization", "Bearer " + tok}, [2]string{"username", "alice"})
		badID := h.Get(httpapi.RequestIDHeader)
		long := strings.Repeat("u", 200)
		call(t, "POST", srv.URL+"/keys/"+pk.Hash().String(), "", [2]string{"username", long}, [2]string{"Authorization", "Bearer x"})
		secretUser := "edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbq"
		call(t, "GET", srv.URL+"/authorized_keys", "", [2]string{"username", secretUser}, [2]string{"Authorization", "Bearer x"})

		log := out.String()
		assert.NotContains(t, log, "Wrong-Passw0rd", "a password reached the log")
		assert.NotContains(t, log, "edsk3Qoq", "a secret key reached the log")
		assert.NotContains(t, log, long, "a user name is shortened")
		if js {
			var failed, bad, answered, longLine map[string]any
			for _, raw := range strings.Split(strings.TrimSpace(log), "\n") {
				m, err := logging.DecodeLine([]byte(raw))
				require.NoError(t, err, raw)
				switch {
				case m["msg"] == "request failed" && m["path"] == "/login":
					failed = m
				case m["msg"] == "request failed" && m["request_id"] == badID:
					bad = m
				case m["msg"] == "request answered" && m["request_id"] == badID:
					answered = m
				case m["msg"] == "request failed" && m["user"] != nil && strings.HasPrefix(m["user"].(string), "uuu"):
					longLine = m
				}
			}
			require.NotNil(t, failed, log)
			assert.Equal(t, "alice", failed["user"])
			assert.Equal(t, "127.0.0.1", failed["client"])
			assert.Equal(t, loginID, failed["request_id"])
			assert.Equal(t, float64(401), failed["status"])
			require.NotNil(t, bad, log)
			assert.Equal(t, "127.0.0.1", bad["client"])
			assert.IsType(t, float64(0), bad["duration_ms"])
			assert.Equal(t, float64(400), bad["status"])
			require.NotNil(t, answered, log)
			assert.Equal(t, float64(400), answered["status"])
			require.NotNil(t, longLine, log)
			assert.Contains(t, longLine["user"], "…(200 bytes)")
		} else {
			assert.Regexp(t, `level=WARN msg="request failed" method=POST path=/login status=401 client=127\.0\.0\.1 user=alice error="[^"]+" request_id=`+loginID+` duration_ms=[0-9.]+\n`, log)
			assert.Regexp(t, `level=WARN msg="request failed" method=POST path=/keys/\S+ status=400 error="[^"]+" request_id=`+badID+` client=127\.0\.0\.1 duration_ms=[0-9.]+\n`, log)
			assert.Regexp(t, `level=DEBUG msg="request answered" method=POST path=/keys/\S+ status=400 request_id=`+badID+` client=127\.0\.0\.1 duration_ms=[0-9.]+\n`, log)
			assert.Contains(t, log, `user="(a value that looks like a secret key, not repeated)"`)
		}
	}
}
