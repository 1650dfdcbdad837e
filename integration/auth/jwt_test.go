package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/taquito"
)

const (
	alicePassword = "Alice-Passw0rd-2024!"
	aliceSecret   = "Alice#Secret-0123456789abcdefghijk"
	bobPassword   = "Bob-Passw0rd-2024!x"
	bobSecret     = "Bob#Secret-0123456789abcdefghijklm"
)

// jwtScript logs in with fetch, then for every case forges a transaction
// from the key with Taquito's LocalForger and has @taquito/remote-signer
// sign it with the case's bearer headers; successful signatures are
// verified with @taquito/utils.
const jwtScript = `
const { RemoteSigner } = require('@taquito/remote-signer');
const { LocalForger } = require('@taquito/local-forging');
const { verifySignature } = require('@taquito/utils');
const forger = new LocalForger();
const login = async (user, password) => {
  const r = await fetch(input.url + '/login', { method: 'POST', headers: { username: user, password } });
  return { status: r.status, body: await r.text() };
};
const tokens = {};
const logins = {};
for (const [user, password] of Object.entries(input.users)) {
  const r = await login(user, password);
  logins[user] = r.status;
  tokens[user] = r.body;
}
const results = [];
for (const c of input.cases) {
  const r = { name: c.name };
  const headers = {};
  if (c.token) headers.Authorization = 'Bearer ' + tokens[c.token];
  if (c.user) headers.username = c.user;
  const rs = new RemoteSigner(c.pkh, input.url, { headers });
  r.forged = await forger.forge({
    branch: input.branch,
    contents: [{ kind: 'transaction', source: c.pkh, fee: '1420', counter: String(c.counter),
      gas_limit: '1521', storage_limit: '0', amount: '1000000', destination: input.destination }],
  });
  try {
    r.pk = await rs.publicKey();
    const s = await rs.sign(r.forged, new Uint8Array([3]));
    r.sig = s.prefixSig;
    r.verified = verifySignature('03' + r.forged, r.pk, r.sig);
  } catch (e) {
    r.error = String((e && e.message) || e);
    r.status = (e && e.status) || (e && e.cause && e.cause.status) || 0;
  }
  results.push(r);
}
return { logins, tokens, results };`

type jwtCase struct {
	Name    string `json:"name"`
	PKH     string `json:"pkh"`
	Token   string `json:"token,omitempty"` // whose token to send
	User    string `json:"user,omitempty"`  // the username header
	Counter int    `json:"counter"`
}

type jwtResult struct {
	Name     string `json:"name"`
	Forged   string `json:"forged"`
	PK       string `json:"pk"`
	Sig      string `json:"sig"`
	Verified bool   `json:"verified"`
	Error    string `json:"error"`
	Status   int    `json:"status"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// token builds a JWS by hand with HMAC h (nil: unsigned) under secret.
func token(t *testing.T, header, claims map[string]any, secret string, h func() hash.Hash) string {
	t.Helper()
	hb, err := json.Marshal(header)
	require.NoError(t, err)
	cb, err := json.Marshal(claims)
	require.NoError(t, err)
	in := b64(hb) + "." + b64(cb)
	if h == nil {
		return in + "."
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}

func TestJWTEndToEnd(t *testing.T) {
	e := newEnv(t)
	taquito.NodeModules(t)
	onlyAlice, anyUser, aliceAndKey := e.generate("tz1"), e.generate("tz2"), e.generate("tz3")
	clientSK, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	clientPK, _ := clientSK.Public()

	cfg := e.writeConfig(fmt.Sprintf(`  jwt:
    users:
      alice:
        password: '%s'
        secret: '%s'
        jwt_exp: 5
      bob:
        password: '%s'
        secret: '%s'
`, alicePassword, aliceSecret, bobPassword, bobSecret), fmt.Sprintf(`tezos:
  %s:
    jwt_users: [alice]
    allow:
      generic: [transaction]
  %s:
    allow:
      generic: [transaction]
  %s:
    jwt_users: [alice]
    authorized_keys: [%s]
    allow:
      generic: [transaction]
`, onlyAlice, anyUser, aliceAndKey, clientPK))
	d := e.start(cfg)

	// Taquito: login, then RemoteSigner with the bearer header.
	cases := []jwtCase{
		{Name: "alice signs with her key", PKH: onlyAlice, Token: "alice", User: "alice", Counter: 1},
		{Name: "bob signs with an unrestricted key", PKH: anyUser, Token: "bob", User: "bob", Counter: 2},
		{Name: "bob may not use alice's key", PKH: onlyAlice, Token: "bob", User: "bob", Counter: 3},
		{Name: "no token", PKH: anyUser, Counter: 4},
		{Name: "alice's token sent as bob", PKH: anyUser, Token: "alice", User: "bob", Counter: 5},
		{Name: "token without username", PKH: anyUser, Token: "alice", Counter: 6},
		{Name: "jwt without the client key signature", PKH: aliceAndKey, Token: "alice", User: "alice", Counter: 7},
	}
	var out struct {
		Logins  map[string]int    `json:"logins"`
		Tokens  map[string]string `json:"tokens"`
		Results []jwtResult       `json:"results"`
	}
	taquito.Run(t, jwtScript, map[string]any{
		"url": d.url, "branch": branch, "destination": destination, "cases": cases,
		"users": map[string]string{"alice": alicePassword, "bob": bobPassword},
	}, &out)
	require.Equal(t, map[string]int{"alice": http.StatusCreated, "bob": http.StatusCreated}, out.Logins, "POST /login answers 201")
	require.Len(t, out.Results, len(cases))
	byName := map[string]jwtResult{}
	for _, r := range out.Results {
		byName[r.Name] = r
		t.Logf("Taquito RemoteSigner, %s: status %d, verified %v, error %q", r.Name, r.Status, r.Verified, r.Error)
	}
	for _, name := range []string{"alice signs with her key", "bob signs with an unrestricted key"} {
		r := byName[name]
		assert.Empty(t, r.Error, name)
		assert.True(t, r.Verified, "%s: @taquito/utils rejects the signature %q", name, r.Sig)
	}
	for name, status := range map[string]int{
		"bob may not use alice's key":          http.StatusForbidden,
		"no token":                             http.StatusUnauthorized,
		"alice's token sent as bob":            http.StatusUnauthorized,
		"token without username":               http.StatusUnauthorized,
		"jwt without the client key signature": http.StatusUnauthorized,
	} {
		r := byName[name]
		assert.Empty(t, r.Sig, "%s: signed", name)
		assert.Equal(t, status, r.Status, "%s: %s", name, r.Error)
	}

	// Every failure of the JWT step answers 401.
	aliceTok := out.Tokens["alice"]
	keys := d.url + "/keys/" + anyUser
	forged := byName["no token"].Forged
	body := strconv.Quote("03" + forged)
	now := time.Now()
	hs := map[string]any{"alg": "HS256", "typ": "JWT"}
	parts := strings.Split(aliceTok, ".")
	require.Len(t, parts, 3)
	sigBytes, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	sigBytes[0] ^= 1
	for _, tc := range []struct {
		name    string
		method  string
		url     string
		headers []string
		want    string
	}{
		{"login without headers", "POST", d.url + "/login", nil, "username and password"},
		{"login with a wrong password", "POST", d.url + "/login", []string{"username", "alice", "password", bobPassword}, "access denied"},
		{"login as an unknown user", "POST", d.url + "/login", []string{"username", "mallory", "password", alicePassword}, "access denied"},
		{"get key without a token", "GET", keys, nil, "authentication required"},
		{"sign without a token", "POST", keys, []string{"username", "alice"}, "authentication required"},
		{"token of another user", "POST", keys, []string{"Authorization", "Bearer " + aliceTok, "username", "bob"}, "not valid for user"},
		{"unknown user", "POST", keys, []string{"Authorization", "Bearer " + aliceTok, "username", "mallory"}, "not valid for user"},
		{"alg none", "POST", keys, []string{"Authorization", "Bearer " + token(t, map[string]any{"alg": "none"}, map[string]any{"user": "alice", "exp": now.Add(time.Hour).Unix()}, "", nil), "username", "alice"}, `"none" is not accepted`},
		{"HS512 with alice's secret", "POST", keys, []string{"Authorization", "Bearer " + token(t, map[string]any{"alg": "HS512"}, map[string]any{"user": "alice", "exp": now.Add(time.Hour).Unix()}, aliceSecret, sha512.New), "username", "alice"}, `"HS512" is not accepted`},
		{"expired", "POST", keys, []string{"Authorization", "Bearer " + token(t, hs, map[string]any{"user": "alice", "exp": now.Add(-time.Minute).Unix()}, aliceSecret, sha256.New), "username", "alice"}, "expired"},
		{"no exp", "POST", keys, []string{"Authorization", "Bearer " + token(t, hs, map[string]any{"user": "alice"}, aliceSecret, sha256.New), "username", "alice"}, "no expiry"},
		{"signed with bob's secret", "POST", keys, []string{"Authorization", "Bearer " + token(t, hs, map[string]any{"user": "alice", "exp": now.Add(time.Hour).Unix()}, bobSecret, sha256.New), "username", "alice"}, "not valid for user"},
		{"tampered signature", "POST", keys, []string{"Authorization", "Bearer " + parts[0] + "." + parts[1] + "." + b64(sigBytes), "username", "alice"}, "not valid for user"},
		{"Basic scheme", "POST", keys, []string{"Authorization", "Basic " + aliceTok, "username", "alice"}, "Bearer scheme"},
		{"garbage", "POST", keys, []string{"Authorization", "Bearer x.y", "username", "alice"}, "malformed"},
	} {
		b := ""
		if strings.HasPrefix(tc.url, keys) && tc.method == "POST" {
			b = body
		}
		r := send(t, tc.method, tc.url, b, tc.headers...)
		assert.Equal(t, http.StatusUnauthorized, r.status, "%s: %s", tc.name, r.body)
		assert.Contains(t, r.errMsg(), tc.want, tc.name)
	}

	// JWT and authorized_keys together: the client key's signature alone
	// is stopped at the JWT step, the token alone by the key's
	// authorized_keys, both together sign.
	msg, err := hex.DecodeString("03" + byName["jwt without the client key signature"].Forged)
	require.NoError(t, err)
	pkh3, err := tezos.ParsePublicKeyHash(aliceAndKey)
	require.NoError(t, err)
	auth, err := clientSK.Sign(signer.AuthenticationData(pkh3, msg), tezos.SignVersion2)
	require.NoError(t, err)
	signURL := d.url + "/keys/" + aliceAndKey + "?authentication=" + url.QueryEscape(auth.String())
	r := send(t, "POST", signURL, strconv.Quote(hex.EncodeToString(msg)))
	assert.Equal(t, http.StatusUnauthorized, r.status, r.body)
	r = send(t, "POST", signURL, strconv.Quote(hex.EncodeToString(msg)), "Authorization", "Bearer "+aliceTok, "username", "alice")
	require.Equal(t, http.StatusOK, r.status, r.body)
	var signed struct{ Signature string }
	require.NoError(t, json.Unmarshal([]byte(r.body), &signed))
	sig, err := tezos.ParseSignature(signed.Signature)
	require.NoError(t, err)
	pk := send(t, "GET", d.url+"/keys/"+aliceAndKey, "", "Authorization", "Bearer "+aliceTok, "username", "alice")
	require.Equal(t, http.StatusOK, pk.status, pk.body)
	var pkBody struct {
		PublicKey string `json:"public_key"`
	}
	require.NoError(t, json.Unmarshal([]byte(pk.body), &pkBody))
	pub, err := tezos.ParsePublicKey(pkBody.PublicKey)
	require.NoError(t, err)
	require.NoError(t, pub.Verify(msg, sig, tezos.SignVersion2))

	d.proc.Stop()
	log := d.proc.Log()
	for name, s := range map[string]string{"alice's password": alicePassword, "alice's secret": aliceSecret, "bob's password": bobPassword, "bob's secret": bobSecret, "a token": parts[2]} {
		assert.NotContains(t, log, s, "%s appears in the daemon's log", name)
	}
}
