package httpapi_test

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/jwtauth"
	"github.com/sigil-signer/sigil/domain/tezos"
)

const (
	alicePassword = "Alice-Passw0rd-2024"
	aliceSecret   = "Alice!Secret#0123456789abcdefXYZ-long"
)

// authRecorder records sign handler results and authentication failures.
type authRecorder struct {
	recorder
	mu       sync.Mutex
	failures []string
}

func (r *authRecorder) AuthenticationFailed(status int, method, ip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, strings.Join([]string{http.StatusText(status), method, ip}, "|"))
}

func jwtSetup(t *testing.T) (*httptest.Server, tezos.PublicKey, *fakeSigner, *authRecorder) {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	pk, _ := sk.Public()
	f := &fakeSigner{keys: map[string]tezos.PrivateKey{pk.Hash().String(): sk}}
	auth, err := jwtauth.New(map[string]jwtauth.User{
		"alice": {Credentials: jwtauth.Credentials{Password: alicePassword, Secret: aliceSecret}},
		"bob":   {Credentials: jwtauth.Credentials{Password: "Bob-Passw0rd-2024!", Secret: "Bob!Secret#0123456789abcdefXYZ-longer"}},
	}, jwtauth.Options{})
	require.NoError(t, err)
	rec := &authRecorder{}
	srv := httptest.NewServer(httpapi.New(f, httpapi.Options{Observer: rec, Auth: auth}).Handler())
	t.Cleanup(srv.Close)
	return srv, pk, f, rec
}

// call sends a request with headers (a header given twice is repeated).
func call(t *testing.T, method, url, body string, headers ...[2]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func login(t *testing.T, url string) string {
	t.Helper()
	code, body, h := call(t, "POST", url+"/login", "", [2]string{"username", "alice"}, [2]string{"password", alicePassword})
	require.Equal(t, http.StatusCreated, code, body)
	assert.Contains(t, h.Get("Content-Type"), "text/plain")
	require.Len(t, strings.Split(body, "."), 3, "the body is the token itself")
	return body
}

func TestJWTLoginAndBearer(t *testing.T) {
	srv, pk, f, rec := jwtSetup(t)
	tok := login(t, srv.URL)
	pkh := pk.Hash().String()
	user := [2]string{"username", "alice"}

	code, body, _ := call(t, "GET", srv.URL+"/keys/"+pkh, "", [2]string{"Authorization", "Bearer " + tok}, user)
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"public_key":"`+pk.String()+`"}`, body)

	msg := []byte{0x03, 0xca, 0xfe}
	code, body, _ = call(t, "POST", srv.URL+"/keys/"+pkh, `"`+hex.EncodeToString(msg)+`"`, [2]string{"Authorization", "Bearer " + tok}, user)
	require.Equal(t, http.StatusOK, code, body)
	var out struct{ Signature string }
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	sig, err := tezos.ParseSignature(out.Signature)
	require.NoError(t, err)
	require.NoError(t, pk.Verify(msg, sig, 2))
	assert.Equal(t, "alice", f.lastReq.User, "the authenticated user reaches the domain")
	assert.Equal(t, "127.0.0.1", f.lastReq.Source, "the client's address reaches the domain")

	// Signatory strips "Bearer " if present and otherwise takes the
	// header as the token; the scheme is case-insensitive.
	for _, v := range []string{tok, "bearer " + tok} {
		code, body, _ = call(t, "GET", srv.URL+"/keys/"+pkh, "", [2]string{"Authorization", v}, user)
		assert.Equal(t, http.StatusOK, code, body)
	}
	assert.Empty(t, rec.failures)
}

func TestJWTFailuresAnswer401(t *testing.T) {
	srv, pk, f, rec := jwtSetup(t)
	tok := login(t, srv.URL)
	keys := srv.URL + "/keys/" + pk.Hash().String()
	sign := `"03cafe"`
	bearer := [2]string{"Authorization", "Bearer " + tok}
	alice := [2]string{"username", "alice"}
	for _, tc := range []struct {
		name, method, url, body string
		headers                 [][2]string
		want                    string
	}{
		{"login without headers", "POST", srv.URL + "/login", "", nil, "username and password"},
		{"login without password", "POST", srv.URL + "/login", "", [][2]string{alice}, "username and password"},
		{"login with a wrong password", "POST", srv.URL + "/login", "", [][2]string{alice, {"password", "Bob-Passw0rd-2024!"}}, "access denied"},
		{"login as an unknown user", "POST", srv.URL + "/login", "", [][2]string{{"username", "carol"}, {"password", alicePassword}}, "access denied"},
		{"login with a huge password", "POST", srv.URL + "/login", "", [][2]string{alice, {"password", strings.Repeat("A", 2000)}}, "exceeds 1024 bytes"},
		{"login with a huge user name", "POST", srv.URL + "/login", "", [][2]string{{"username", strings.Repeat("a", 300)}, {"password", alicePassword}}, "exceeds 256 bytes"},
		{"login with two user names", "POST", srv.URL + "/login", "", [][2]string{alice, {"username", "bob"}, {"password", alicePassword}}, "given 2 times"},
		{"sign without a token", "POST", keys, sign, [][2]string{alice}, "authentication required"},
		{"get key without a token", "GET", keys, "", nil, "authentication required"},
		{"authorized_keys without a token", "GET", srv.URL + "/authorized_keys", "", nil, "authentication required"},
		{"token without username", "POST", keys, sign, [][2]string{bearer}, "username header"},
		{"token of another user", "POST", keys, sign, [][2]string{bearer, {"username", "bob"}}, "not valid for user"},
		{"token for an unknown user", "POST", keys, sign, [][2]string{bearer, {"username", "carol"}}, "not valid for user"},
		{"tampered token", "POST", keys, sign, [][2]string{{"Authorization", "Bearer " + tok[:len(tok)-2] + "xx"}, alice}, "not valid for user"},
		{"Basic scheme", "POST", keys, sign, [][2]string{{"Authorization", "Basic " + tok}, alice}, "Bearer scheme"},
		{"two Authorization headers", "POST", keys, sign, [][2]string{bearer, bearer, alice}, "given 2 times"},
		{"huge Authorization header", "POST", keys, sign, [][2]string{{"Authorization", "Bearer " + strings.Repeat("a", 9000)}, alice}, "exceeds 8192 bytes"},
		{"garbage token", "POST", keys, sign, [][2]string{{"Authorization", "Bearer abc"}, alice}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.lastReq.Message = nil
			code, body, h := call(t, tc.method, tc.url, tc.body, tc.headers...)
			assert.Equal(t, http.StatusUnauthorized, code, body)
			assert.Equal(t, "application/json", h.Get("Content-Type"))
			var errs []struct{ ID, Kind, Msg string }
			require.NoError(t, json.Unmarshal([]byte(body), &errs), body)
			require.Len(t, errs, 1)
			assert.Contains(t, errs[0].Msg, tc.want)
			assert.NotContains(t, body, alicePassword)
			assert.NotContains(t, body, aliceSecret)
			assert.Nil(t, f.lastReq.Message, "the signer must not be reached")
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.NotEmpty(t, rec.failures)
	for _, f := range rec.failures {
		assert.Equal(t, "Unauthorized|jwt|127.0.0.1", f)
	}
}

func TestNoJWTWithoutAuthenticator(t *testing.T) {
	srv, pks, f, _ := setup(t)
	code, _ := do(t, "POST", srv.URL+"/login", "")
	assert.Equal(t, http.StatusNotFound, code, "no /login without server.jwt")
	pkh := pks[tezos.Ed25519].Hash().String()
	code, body := do(t, "POST", srv.URL+"/keys/"+pkh, `"03cafe"`)
	require.Equal(t, http.StatusOK, code, body)
	assert.Empty(t, f.lastReq.User)
}

// TestRoutingBeforeAuthentication: as Signatory's router (gorilla mux, whose
// middleware runs only on a matched route), an unknown path is 404 and a
// known path with another method 405 with Allow, with or without JWT and
// without a token; a matched endpoint then needs the token (401).
func TestRoutingBeforeAuthentication(t *testing.T) {
	plain, pks, _, _ := setup(t)
	withJWT, pk, _, _ := jwtSetup(t)
	pkh := pks[tezos.Ed25519].Hash().String()
	for _, c := range []struct {
		method, path string
		plain, jwt   int
		allow        string
	}{
		{"GET", "/nope", 404, 404, ""},
		{"GET", "/keys/" + pkh + "/x", 404, 404, ""},
		{"GET", "/keys", 404, 404, ""},
		{"PUT", "/keys/" + pkh, 405, 405, "GET, HEAD, POST"},
		{"DELETE", "/keys/" + pkh, 405, 405, "GET, HEAD, POST"},
		{"PATCH", "/keys/" + pkh, 405, 405, "GET, HEAD, POST"},
		{"POST", "/authorized_keys", 405, 405, "GET, HEAD"},
		{"DELETE", "/bls_prove_possession/" + pkh, 405, 405, "GET, HEAD"},
		{"GET", "/login", 404, 405, "POST"},
		{"POST", "/login", 404, 401, ""},
		{"GET", "/keys/" + pkh, 200, 401, ""},
		{"GET", "/authorized_keys", 200, 401, ""},
	} {
		for _, srv := range []struct {
			name string
			url  string
			want int
		}{{"no JWT", plain.URL, c.plain}, {"JWT", withJWT.URL, c.jwt}} {
			path := c.path
			if srv.name == "JWT" {
				path = strings.Replace(path, pkh, pk.Hash().String(), 1)
			}
			code, body, h := call(t, c.method, srv.url+path, "")
			assert.Equal(t, srv.want, code, "%s %s %s: %s", srv.name, c.method, c.path, body)
			if srv.want == 405 {
				assert.Equal(t, c.allow, h.Get("Allow"), "%s %s %s", srv.name, c.method, c.path)
			}
			if srv.want >= 400 {
				var errs []struct{ ID, Kind, Msg string }
				assert.NoError(t, json.Unmarshal([]byte(body), &errs), "JSON error body: %s", body)
			}
		}
	}
}
