package signatorydiff

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// env is what every scenario shares.
type env struct {
	c         *corpus
	bins      struct{ signatory, signatoryCLI, sigil string }
	vaultPath string
	hook      *hookServer
	// genericKinds are the operation kinds both programs accept in
	// allow.generic (Sigil's list-ops ∩ Signatory's list-ops).
	genericKinds []string
	// names maps a key hash to its corpus name (for readable tables).
	names map[string]string
	diffs []diff
	stats struct {
		// cases sent (to each daemon); signatures both returned valid,
		// of which compared for equality (Ed25519, BLS).
		cases, bothValid, equalChecked int
	}
}

// tcase is one request of the corpus, sent to both daemons in turn.
type tcase struct {
	name   string
	method string // default POST when msg or body is set, else GET
	// path may name corpus keys in braces: /keys/{w1}.
	path string
	// query is added as is (e.g. "version=1"); authentication is added by
	// auth.
	query string
	// msg is a corpus message (the body is its hex as a JSON string);
	// body, when set, is sent as is instead.
	msg  string
	body *string
	// key is the corpus key whose signature is expected (default: the key
	// in the path).
	key string
	// auth signs the request for server.authorized_keys: a client key
	// name, "garbage" (not a signature) or "wrong-message" (client-a's
	// signature of another message); "" sends none.
	auth string
	// jwt: "" none; "<user>" a token this daemon issued to user;
	// "<user>@other" the other daemon's token; "<user>-tampered" a token
	// with a changed signature; "<user>-as-<other>" user's token with the
	// username header of other; "bearer-only" a token without username.
	jwt string
	// login: POST /login as "<user>:<password>"; a 201 keeps the token.
	login string
	// hook is the policy hook's reply mode for this request.
	hook    string
	headers map[string]string
}

// outcome is what one daemon answered to one case.
type outcome struct {
	status int
	err    string
	body   string
	shape  string
	// sig is the signature (or proof of possession) and sigValid its check
	// against the key with the primitives' own libraries.
	sig, sigValid string
	// value is the meaningful content of a non-signature answer (public
	// key, authorized keys, JWT claims).
	value string
	// hook is what the policy hook received ("" when not configured).
	hook string
}

var client = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

var braces = regexp.MustCompile(`\{([a-z0-9-]+)\}`)

// resolve replaces {name} by the corpus key's hash.
func (e *env) resolve(s string) string {
	return braces.ReplaceAllStringFunc(s, func(m string) string { return e.c.key(m[1 : len(m)-1]).PKH })
}

// targetKey is the key a case's path names (for signatures and
// authentication), "" if none.
func (cs tcase) targetKey() string {
	if cs.key != "" {
		return cs.key
	}
	if m := braces.FindStringSubmatch(cs.path); m != nil {
		return m[1]
	}
	return ""
}

// version is the signing version the request asks for, as both programs
// read it for BLS (absent, empty or unknown: 2).
func (cs tcase) version() uint8 {
	q, _ := url.ParseQuery(cs.query)
	switch q.Get("version") {
	case "0":
		return 0
	case "1":
		return 1
	}
	return 2
}

// do sends cs to d and analyses the answer; pair is the other daemon (for
// tokens it issued).
func (e *env) do(d, other *daemon, cs tcase) outcome {
	var msg []byte
	body := ""
	if cs.msg != "" {
		var err error
		if msg, err = e.c.message(cs.msg); err != nil {
			panic(err)
		}
		body = strconv.Quote(hex.EncodeToString(msg))
	}
	if cs.body != nil {
		body = *cs.body
		// What a daemon would sign: the body's JSON string as hex, if it
		// is one (to verify a signature it returns).
		var h string
		if json.Unmarshal([]byte(body), &h) == nil {
			msg, _ = hex.DecodeString(h)
		}
	}
	method := cs.method
	if method == "" {
		method = http.MethodGet
		if cs.msg != "" || cs.body != nil || cs.login != "" {
			method = http.MethodPost
		}
	}
	q := cs.query
	if cs.auth != "" {
		q = joinQuery(q, "authentication="+url.QueryEscape(e.authentication(cs, msg)))
	}
	u := d.api + e.resolve(cs.path)
	if q != "" {
		u += "?" + q
	}
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rb)
	if err != nil {
		panic(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range cs.headers {
		req.Header.Set(k, v)
	}
	if cs.login != "" {
		user, pass, _ := strings.Cut(cs.login, ":")
		req.Header.Set("username", user)
		req.Header.Set("password", pass)
	}
	if cs.jwt != "" {
		e.setJWT(req, d, other, cs.jwt)
	}
	e.hook.begin(cs.hook)
	resp, err := client.Do(req)
	var o outcome
	if err != nil {
		o.err = err.Error()
	} else {
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		o.status, o.body = resp.StatusCode, string(raw)
		if rerr != nil {
			o.err = rerr.Error()
		}
	}
	o.hook = e.hook.end()
	e.analyse(&o, cs, msg)
	if cs.login != "" && o.status == http.StatusCreated {
		user, _, _ := strings.Cut(cs.login, ":")
		d.tokens[user] = strings.TrimSpace(o.body)
	}
	return o
}

func joinQuery(a, b string) string {
	if a == "" {
		return b
	}
	return a + "&" + b
}

// authentication is the ?authentication= value of a case: the client key's
// signature of 0x04 0x01 ‖ key hash ‖ message (Signatory's
// AuthenticatedBytesToSign), or the deliberate mistakes.
func (e *env) authentication(cs tcase, msg []byte) string {
	switch cs.auth {
	case "garbage":
		return "notasignature"
	case "wrong-message":
		msg = append(slices.Clone(msg), 0)
		cs.auth = "client-a"
	}
	pkh, err := tezos.ParsePublicKeyHash(e.c.key(cs.targetKey()).PKH)
	if err != nil {
		panic(err)
	}
	sk, err := tezos.ParsePrivateKey(e.c.key(cs.auth).SK)
	if err != nil {
		panic(err)
	}
	defer sk.Zero()
	sig, err := sk.Sign(signer.AuthenticationData(pkh, msg), tezos.SignVersion2)
	if err != nil {
		panic(err)
	}
	return sig.String()
}

func (e *env) setJWT(req *http.Request, d, other *daemon, mode string) {
	user, tok := mode, ""
	switch {
	case mode == "bearer-only":
		req.Header.Set("Authorization", "Bearer "+d.tokens["alice"])
		return
	case strings.HasSuffix(mode, "@other"):
		user = strings.TrimSuffix(mode, "@other")
		tok = other.tokens[user]
	case strings.HasSuffix(mode, "-tampered"):
		user = strings.TrimSuffix(mode, "-tampered")
		tok = d.tokens[user]
		if tok != "" {
			last := tok[len(tok)-2]
			tok = tok[:len(tok)-2] + string("AB"[boolIndex(last == 'A')]) + tok[len(tok)-1:]
		}
	case strings.Contains(mode, "-as-"):
		var as string
		user, as, _ = strings.Cut(mode, "-as-")
		req.Header.Set("Authorization", "Bearer "+d.tokens[user])
		req.Header.Set("username", as)
		return
	default:
		tok = d.tokens[user]
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("username", user)
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// analyse classifies the body and checks signatures.
func (e *env) analyse(o *outcome, cs tcase, msg []byte) {
	if o.err != "" && o.status == 0 {
		o.shape = "no answer"
		return
	}
	var obj map[string]json.RawMessage
	var arr []map[string]json.RawMessage
	switch {
	case strings.TrimSpace(o.body) == "":
		o.shape = "empty"
	case json.Unmarshal([]byte(o.body), &obj) == nil:
		o.shape = "json object"
		str := func(k string) string {
			var s string
			_ = json.Unmarshal(obj[k], &s)
			return s
		}
		switch {
		case obj["signature"] != nil:
			o.shape, o.sig = "signature", str("signature")
			o.sigValid = e.verify(cs.targetKey(), msg, o.sig, cs.version(), false)
		case obj["bls_prove_possession"] != nil:
			o.shape, o.sig = "proof of possession", str("bls_prove_possession")
			o.sigValid = e.verify(cs.targetKey(), nil, o.sig, 0, true)
		case obj["public_key"] != nil:
			o.shape, o.value = "public key", e.name(str("public_key"))
		case len(obj) == 0 || obj["authorized_keys"] != nil:
			var keys []string
			_ = json.Unmarshal(obj["authorized_keys"], &keys)
			for i, k := range keys {
				keys[i] = e.name(k)
			}
			o.shape, o.value = "authorized keys", "["+strings.Join(keys, " ")+"]"
		}
	case json.Unmarshal([]byte(o.body), &arr) == nil && len(arr) == 1 && arr[0]["msg"] != nil && arr[0]["id"] != nil && arr[0]["kind"] != nil:
		o.shape = "error json"
	case json.Valid([]byte(o.body)):
		o.shape = "other json"
	case cs.login != "" && o.status == http.StatusCreated:
		o.shape, o.value = "token", describeJWT(strings.TrimSpace(o.body))
	default:
		o.shape = "text"
	}
}

// verify checks a signature or proof of possession by keyName's public key
// with enclavetest's verifiers (crypto/ed25519, crypto/ecdsa, decred, blst).
func (e *env) verify(keyName string, msg []byte, s string, version uint8, pop bool) string {
	if keyName == "" {
		return "no key to verify with"
	}
	pk, err := tezos.ParsePublicKey(e.c.key(keyName).PK)
	if err != nil {
		panic(err)
	}
	sig, err := tezos.ParseSignature(s)
	if err != nil {
		return "unparseable: " + err.Error()
	}
	if pop {
		err = enclavetest.VerifyPossession(pk, sig)
	} else {
		err = enclavetest.Verify(pk, msg, sig, version)
	}
	if err != nil {
		return "invalid: " + err.Error()
	}
	return "valid"
}

// name replaces a key hash or public key of the corpus by its name.
func (e *env) name(s string) string {
	if n, ok := e.names[s]; ok {
		return n
	}
	return s
}

// describeJWT summarises a token: its header's algorithm and its claim
// names (the values of exp and iat differ by the second they were made).
func describeJWT(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "not a JWT"
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims map[string]any
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	c, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || json.Unmarshal(h, &hdr) != nil || json.Unmarshal(c, &claims) != nil {
		return "malformed JWT"
	}
	var names []string
	for k, v := range claims {
		if k == "user" {
			k = fmt.Sprintf("user=%v", v)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	return fmt.Sprintf("alg %s, claims %s", hdr.Alg, strings.Join(names, " "))
}
