package httpapi_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

type fakeSigner struct {
	keys    map[string]tezos.PrivateKey
	lastReq signer.SignRequest
	lastPoP signer.PossessionRequest
	signErr error
}

func (f *fakeSigner) Key(pkh string) (signer.Key, error) {
	sk, ok := f.keys[pkh]
	if !ok {
		return signer.Key{}, domain.Errorf(domain.KindNotFound, "key %s not found", pkh)
	}
	pk, _ := sk.Public()
	return signer.Key{PKH: pk.Hash(), PublicKey: pk, Vault: "v"}, nil
}

func (f *fakeSigner) Sign(_ context.Context, req signer.SignRequest) (tezos.Signature, error) {
	f.lastReq = req
	if f.signErr != nil {
		return tezos.Signature{}, f.signErr
	}
	sk, ok := f.keys[req.PKH]
	if !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "key %s not found", req.PKH)
	}
	v := uint8(2)
	if req.Version != nil {
		v = *req.Version
	}
	return sk.Sign(req.Message, v)
}

func (f *fakeSigner) ProvePossession(_ context.Context, req signer.PossessionRequest) (tezos.Signature, error) {
	f.lastPoP = req
	if f.signErr != nil {
		return tezos.Signature{}, f.signErr
	}
	sk, ok := f.keys[req.PKH]
	if !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "key %s not found", req.PKH)
	}
	return sk.ProvePossession()
}

func (f *fakeSigner) AuthorizedKeys() []tezos.PublicKeyHash { return nil }

type recorder struct {
	statuses []int
	authFail []string
}

func (r *recorder) SignHandled(_ string, status int, _ time.Duration) {
	r.statuses = append(r.statuses, status)
}

func (r *recorder) AuthenticationFailed(status int, method, ip string) {
	r.authFail = append(r.authFail, fmt.Sprint(status, " ", method, " ", ip))
}

func setup(t *testing.T) (*httptest.Server, map[tezos.KeyType]tezos.PublicKey, *fakeSigner, *recorder) {
	f := &fakeSigner{keys: map[string]tezos.PrivateKey{}}
	pks := map[tezos.KeyType]tezos.PublicKey{}
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		pk, _ := sk.Public()
		f.keys[pk.Hash().String()] = sk
		pks[kt] = pk
	}
	rec := &recorder{}
	srv := httptest.NewServer(httpapi.New(f, httpapi.Options{MaxBody: 4096, Observer: rec}).Handler())
	t.Cleanup(srv.Close)
	return srv, pks, f, rec
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, string(b)
}

func TestKeysAndSign(t *testing.T) {
	srv, pks, _, rec := setup(t)
	msg := []byte{0x03, 0xde, 0xad, 0xbe, 0xef}
	for kt, pk := range pks {
		code, body := do(t, "GET", srv.URL+"/keys/"+pk.Hash().String(), "")
		require.Equal(t, 200, code, body)
		assert.JSONEq(t, `{"public_key":"`+pk.String()+`"}`, body)

		code, body = do(t, "POST", srv.URL+"/keys/"+pk.Hash().String(), `"`+hex.EncodeToString(msg)+`"`)
		require.Equal(t, 200, code, body)
		var out struct{ Signature string }
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		sig, err := tezos.ParseSignature(out.Signature)
		require.NoError(t, err)
		assert.Equal(t, kt, sig.Type, "typed prefix like Signatory")
		require.NoError(t, pk.Verify(msg, sig, 2))
	}
	assert.Equal(t, []int{200, 200, 200, 200}, rec.statuses)
}

func TestBLSVersionAndPossession(t *testing.T) {
	srv, pks, f, _ := setup(t)
	pk := pks[tezos.BLS]
	url := srv.URL + "/keys/" + pk.Hash().String()
	code, body := do(t, "POST", url+"?version=1", `"0301"`)
	require.Equal(t, 200, code, body)
	require.NotNil(t, f.lastReq.Version)
	assert.Equal(t, uint8(1), *f.lastReq.Version)
	var out struct{ Signature string }
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	sig, _ := tezos.ParseSignature(out.Signature)
	require.NoError(t, pk.Verify([]byte{3, 1}, sig, 1))

	code, body = do(t, "POST", url, `"0301"`)
	require.Equal(t, 200, code, body)
	assert.Nil(t, f.lastReq.Version, "absent version reaches the domain as nil (latest)")

	code, body = do(t, "GET", srv.URL+"/bls_prove_possession/"+pk.Hash().String(), "")
	require.Equal(t, 200, code, body)
	var pop struct {
		P string `json:"bls_prove_possession"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &pop))
	require.True(t, strings.HasPrefix(pop.P, "BLsig"))
	psig, err := tezos.ParseSignature(pop.P)
	require.NoError(t, err)
	require.NoError(t, pk.VerifyPossession(psig))
}

func TestErrors(t *testing.T) {
	srv, pks, f, _ := setup(t)
	pkh := pks[tezos.Ed25519].Hash().String()
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"unknown key", "GET", "/keys/tz1burnburnburnburnburnburnburjAYjjX", "", 404, "not found"},
		{"unknown key sign", "POST", "/keys/tz1burnburnburnburnburnburnburjAYjjX", `"03"`, 404, "not found"},
		{"bad hex", "POST", "/keys/" + pkh, `"03zz"`, 400, "not valid hex"},
		{"not a json string", "POST", "/keys/" + pkh, `{"a":1}`, 400, "JSON string"},
		{"empty", "POST", "/keys/" + pkh, `""`, 400, "no bytes"},
		{"bad version", "POST", "/keys/" + pkh + "?version=7", `"03"`, 400, "invalid version"},
		{"too large", "POST", "/keys/" + pkh, `"` + strings.Repeat("00", 4096) + `"`, 413, "exceeds 4096 bytes"},
		{"no endpoint", "GET", "/nope", "", 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, srv.URL+tc.path, tc.body)
			assert.Equal(t, tc.status, code, body)
			var e []struct{ ID, Kind, Msg string }
			require.NoError(t, json.Unmarshal([]byte(body), &e), body)
			require.Len(t, e, 1)
			assert.Equal(t, "failure", e[0].ID)
			assert.Contains(t, e[0].Msg, tc.msg)
		})
	}
	for kind, status := range map[domain.Kind]int{
		domain.KindForbidden: 403, domain.KindConflict: 409, domain.KindUnavailable: 503,
		domain.KindUnauthorized: 401, domain.KindInternal: 500,
	} {
		f.signErr = domain.Errorf(kind, "boom")
		code, _ := do(t, "POST", srv.URL+"/keys/"+pkh, `"03"`)
		assert.Equal(t, status, code, kind.String())
	}
}

func TestAuthorizedKeysEmpty(t *testing.T) {
	srv, _, _, _ := setup(t)
	code, body := do(t, "GET", srv.URL+"/authorized_keys", "")
	assert.Equal(t, 200, code)
	assert.JSONEq(t, `{}`, body)
}

func TestHealthz(t *testing.T) {
	var ready error
	srv := httptest.NewServer(httpapi.UtilityHandler(func(context.Context) error { return ready }, nil))
	defer srv.Close()
	code, _ := do(t, "GET", srv.URL+"/healthz", "")
	assert.Equal(t, 200, code)
	ready = domain.Errorf(domain.KindUnavailable, "enclave unavailable: connection refused")
	code, body := do(t, "GET", srv.URL+"/healthz", "")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "connection refused")
}

// TestAuthenticationPassedThrough: the `authentication` query parameter
// reaches the domain as the client sent it (the domain reads it only when
// authorized keys apply, as Signatory does), for signing and for proofs of
// possession; given twice it is refused; a refusal by the authorized keys is
// reported as Signatory's auth_method "authentication", on both endpoints.
func TestAuthenticationPassedThrough(t *testing.T) {
	srv, pks, f, rec := setup(t)
	pkh := pks[tezos.BLS].Hash().String()
	code, body := do(t, "POST", srv.URL+"/keys/"+pkh+"?authentication=xyz", `"0301"`)
	require.Equal(t, 200, code, body)
	assert.Equal(t, "xyz", f.lastReq.Authentication)
	assert.Equal(t, "127.0.0.1", f.lastReq.Source)

	code, body = do(t, "GET", srv.URL+"/bls_prove_possession/"+pkh+"?authentication=abc", "")
	require.Equal(t, 200, code, body)
	assert.Equal(t, signer.PossessionRequest{PKH: pkh, Authentication: "abc", Source: "127.0.0.1"}, f.lastPoP)

	for _, path := range []string{"/keys/" + pkh, "/bls_prove_possession/" + pkh} {
		method := "GET"
		if strings.HasPrefix(path, "/keys/") {
			method = "POST"
		}
		code, body = do(t, method, srv.URL+path+"?authentication=a&authentication=b", `"0301"`)
		assert.Equal(t, 400, code, body)
		assert.Contains(t, body, `query parameter \"authentication\" given 2 times`)
	}

	rec.authFail = nil
	for kind, status := range map[domain.Kind]int{domain.KindUnauthorized: 401, domain.KindInvalid: 400, domain.KindForbidden: 403} {
		f.signErr = &domain.Error{Kind: kind, Msg: "refused", Err: signer.ErrAuthentication}
		code, _ = do(t, "POST", srv.URL+"/keys/"+pkh, `"0301"`)
		assert.Equal(t, status, code)
	}
	f.signErr = &domain.Error{Kind: domain.KindUnauthorized, Msg: "refused", Err: signer.ErrAuthentication}
	code, _ = do(t, "GET", srv.URL+"/bls_prove_possession/"+pkh, "")
	assert.Equal(t, 401, code)
	f.signErr = domain.Errorf(domain.KindForbidden, "policy")
	code, _ = do(t, "POST", srv.URL+"/keys/"+pkh, `"0301"`)
	assert.Equal(t, 403, code)
	code, _ = do(t, "GET", srv.URL+"/bls_prove_possession/"+pkh, "")
	assert.Equal(t, 403, code)
	slices.Sort(rec.authFail)
	assert.Equal(t, []string{"400 authentication 127.0.0.1", "401 authentication 127.0.0.1", "401 authentication 127.0.0.1", "403 authentication 127.0.0.1"}, rec.authFail,
		"authentication refusals only, with Signatory's method name")
}
