// Package httpapi is Sigil's HTTP adapter: the Tezos remote-signer API that
// octez-client, octez-baker and Taquito speak (GET/POST /keys/{pkh},
// GET /authorized_keys, GET /bls_prove_possession/{pkh}, and POST /login
// with JWT authentication of every other request when configured) with
// Signatory's error JSON, and the utility endpoints (/healthz, /metrics). It
// translates
// domain error kinds into HTTP status codes and nothing else: all decisions
// are the domain's (and the authenticator's).
package httpapi

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// DefaultMaxBody bounds a sign request body (a hex JSON string). Tezos
// operations are at most 32 KiB, so 1 MiB leaves ample room.
const DefaultMaxBody = 1 << 20

// Signer is what the HTTP API needs from the domain.
type Signer interface {
	Key(pkh string) (signer.Key, error)
	Sign(ctx context.Context, req signer.SignRequest) (tezos.Signature, error)
	ProvePossession(ctx context.Context, req signer.PossessionRequest) (tezos.Signature, error)
	AuthorizedKeys() []tezos.PublicKeyHash
}

// Observer receives the HTTP adapter's events (for metrics).
type Observer interface {
	// SignHandled is called once per finished sign request.
	SignHandled(address string, status int, d time.Duration)
	// AuthenticationFailed is called for every request refused for its
	// client authentication (method: "authentication" for the authorized
	// keys, as Signatory names it; "jwt").
	AuthenticationFailed(status int, method, clientIP string)
}

// Options configure the API handler.
type Options struct {
	MaxBody  int64
	Logger   *slog.Logger
	Observer Observer
	// Auth, when set, enables JWT: POST /login, and a token on every
	// other request.
	Auth Authenticator
}

// API serves the remote-signer endpoints.
type API struct {
	s        Signer
	opts     Options
	log      *slog.Logger
	logins   *loginLimiter // POST /login attempts per address and user
	failures *failureLog   // aggregated log lines of repeated client failures
}

// New returns the remote-signer API over s.
func New(s Signer, opts Options) *API {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{s: s, opts: opts, log: log, logins: newLoginLimiter(), failures: newFailureLog(log, failureWindow)}
}

// Handler returns the main server's routes. As Signatory's router, it routes
// first: an unknown path is 404 and a known path with another method 405
// (with Allow), without authentication; with JWT configured, a request that
// matches an endpoint (but POST /login) is then authenticated.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.Handler {
		if a.opts.Auth != nil {
			return a.requireToken(h)
		}
		return h
	}
	mux.Handle("GET /keys/{pkh}", auth(a.getKey))
	mux.Handle("POST /keys/{pkh}", auth(a.sign))
	mux.Handle("/keys/{pkh}", methodNotAllowed("GET, HEAD, POST"))
	mux.Handle("GET /authorized_keys", auth(a.authorizedKeys))
	mux.Handle("/authorized_keys", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /bls_prove_possession/{pkh}", auth(a.provePossession))
	mux.Handle("/bls_prove_possession/{pkh}", methodNotAllowed("GET, HEAD"))
	if a.opts.Auth != nil {
		mux.HandleFunc("POST /login", a.login)
		mux.Handle("/login", methodNotAllowed("POST"))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", domain.Echo(r.Method), domain.Echo(r.URL.Path)))
	})
	return a.withRequest(mux)
}

// methodNotAllowed answers 405 with the methods the path takes.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", domain.Echo(r.Method), domain.Echo(r.URL.Path), allow))
	})
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request) {
	k, err := a.s.Key(r.PathValue("pkh"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"public_key": k.PublicKey.String()})
}

func (a *API) sign(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	pkh := r.PathValue("pkh")
	status := http.StatusOK
	defer func() {
		if a.opts.Observer != nil {
			a.opts.Observer.SignHandled(pkh, status, time.Since(start))
		}
	}()
	req, err := a.decodeSign(w, r)
	if err == nil {
		var sig tezos.Signature
		sig, err = a.s.Sign(r.Context(), req)
		if err == nil {
			// {"signature":"…"}: base58 needs no escaping.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"signature":"` + sig.String() + "\"}\n"))
			return
		}
	}
	if errors.Is(err, signer.ErrAuthentication) {
		// Repeated by whoever probes the keys: aggregated in the log.
		status = a.failRepeated(w, r, err)
		a.authFailure(err, status, r)
		return
	}
	status = a.fail(w, r, err)
}

// authMethodAuthorizedKeys is the auth_method label of a refusal by the
// server-wide authorized keys (Signatory's "authentication").
const authMethodAuthorizedKeys = "authentication"

// authFailure reports err to the observer when it refused a client's
// authentication by the authorized keys.
func (a *API) authFailure(err error, status int, r *http.Request) {
	if errors.Is(err, signer.ErrAuthentication) && a.opts.Observer != nil {
		a.opts.Observer.AuthenticationFailed(status, authMethodAuthorizedKeys, clientIP(r))
	}
}

// decodeHexString decodes the sign request body, a JSON string of hex
// digits. The common form (a plain quoted string of hex digits) is decoded
// directly; anything else goes through encoding/json, so escapes are
// handled and errors are its own.
func decodeHexString(body []byte) ([]byte, error) {
	b := bytes.TrimSpace(body)
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && bytes.IndexAny(b[1:len(b)-1], "\\\"") < 0 {
		b = b[1 : len(b)-1]
	} else {
		var s string
		if err := json.Unmarshal(body, &s); err != nil {
			return nil, domain.Errorf(domain.KindInvalid, "request body must be a JSON string of hex bytes: %v", err)
		}
		b = []byte(s)
	}
	msg := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(msg, b); err != nil {
		return nil, domain.Errorf(domain.KindInvalid, "request body is not valid hex: %v", err)
	}
	if len(b)%2 != 0 {
		return nil, domain.Errorf(domain.KindInvalid, "request body is not valid hex: odd length")
	}
	return msg, nil
}

func (a *API) decodeSign(w http.ResponseWriter, r *http.Request) (signer.SignRequest, error) {
	req := signer.SignRequest{PKH: r.PathValue("pkh"), User: userFrom(r.Context()), Source: clientIP(r)}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// A malformed parameter must not be dropped silently (a version
		// the client asked for would become the default).
		return req, domain.Errorf(domain.KindInvalid, "malformed query string: %s", domain.Echo(err.Error()))
	}
	for _, name := range []string{"version", "authentication"} {
		if n := len(q[name]); n > 1 {
			return req, domain.Errorf(domain.KindInvalid, "query parameter %q given %d times", name, n)
		}
	}
	if vals, ok := q["version"]; ok {
		v := vals[0]
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n > 2 {
			return req, domain.Errorf(domain.KindInvalid, "invalid version %q: want 0, 1 or 2", domain.Echo(v))
		}
		ver := uint8(n)
		req.Version = &ver
	}
	// Read (and checked) by the domain only when authorized keys apply,
	// as Signatory reads it.
	req.Authentication = q.Get("authentication")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, domain.Errorf(domain.KindTooLarge, "request body exceeds %d bytes", a.opts.MaxBody)
		}
		return req, domain.Errorf(domain.KindInvalid, "reading request body: %w", err)
	}
	msg, err := decodeHexString(body)
	if err != nil {
		return req, err
	}
	if len(msg) == 0 {
		return req, domain.Errorf(domain.KindInvalid, "request body holds no bytes to sign")
	}
	req.Message = msg
	return req, nil
}

func (a *API) provePossession(w http.ResponseWriter, r *http.Request) {
	req := signer.PossessionRequest{PKH: r.PathValue("pkh"), User: userFrom(r.Context()), Source: clientIP(r)}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil && len(q["authentication"]) > 1 {
		err = domain.Errorf(domain.KindInvalid, "query parameter %q given %d times", "authentication", len(q["authentication"]))
	} else if err != nil {
		err = domain.Errorf(domain.KindInvalid, "malformed query string: %s", domain.Echo(err.Error()))
	}
	var sig tezos.Signature
	if err == nil {
		req.Authentication = q.Get("authentication")
		sig, err = a.s.ProvePossession(r.Context(), req)
	}
	if err != nil {
		status := a.fail(w, r, err)
		a.authFailure(err, status, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"bls_prove_possession": sig.String()})
}

func (a *API) authorizedKeys(w http.ResponseWriter, _ *http.Request) {
	keys := a.s.AuthorizedKeys()
	if len(keys) == 0 {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.String()
	}
	writeJSON(w, http.StatusOK, map[string][]string{"authorized_keys": out})
}

// StatusFor maps a domain error to its HTTP status.
func StatusFor(err error) int {
	switch domain.KindOf(err) {
	case domain.KindInvalid:
		return http.StatusBadRequest
	case domain.KindUnauthorized:
		return http.StatusUnauthorized
	case domain.KindForbidden:
		return http.StatusForbidden
	case domain.KindNotFound:
		return http.StatusNotFound
	case domain.KindConflict:
		return http.StatusConflict
	case domain.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case domain.KindUnavailable:
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) int {
	status, lvl := StatusFor(err), slog.LevelWarn
	if status >= 500 {
		lvl = slog.LevelError
	}
	a.log.Log(r.Context(), lvl, "request failed", "method", domain.Echo(r.Method), "path", domain.Echo(r.URL.Path), "status", status, "error", bound(err.Error()))
	return a.respond(w, err)
}

// failRepeated is fail for failures a client can repeat at will
// (authentication refusals): their log lines are aggregated per client
// and path (failureLog).
func (a *API) failRepeated(w http.ResponseWriter, r *http.Request, err error) int {
	status := StatusFor(err)
	a.failures.record(failure{ctx: r.Context(), client: clientIP(r), method: domain.Echo(r.Method), path: domain.Echo(r.URL.Path),
		status: status, msg: bound(err.Error()), user: userOf(r)})
	return a.respond(w, err)
}

// respond writes err's status and Signatory's error body.
func (a *API) respond(w http.ResponseWriter, err error) int {
	status := StatusFor(err)
	msg := err.Error()
	if status >= 500 {
		// Server-side failures are described to the client without the
		// host's file paths or network addresses; the log has them.
		msg = Redact(msg)
	}
	writeError(w, status, msg)
	return status
}

type errorBody struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Msg  string `json:"msg"`
}

// writeError writes Signatory's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, []errorBody{{ID: "failure", Kind: "temporary", Msg: bound(strings.TrimSpace(msg))}})
}

// maxMessage bounds an error message in a body or a log line. Inputs are
// echoed shortened (domain.Echo); this is the backstop.
const maxMessage = 1024

func bound(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return strings.ToValidUTF8(s[:maxMessage], "") + fmt.Sprintf("…(%d bytes)", len(s))
}

var (
	reAddress = regexp.MustCompile(`(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"']+)|(?:\[[0-9a-fA-F:.%a-zA-Z]+\]:\d+)|(?:\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)|(?:\b[a-zA-Z0-9.-]+:\d{2,5}\b)`)
	rePath    = regexp.MustCompile(`(?:^|[\s"'(=])(/[^\s"':,)]+)`)
)

// Redact removes network addresses (host:port, IPs, URLs) and absolute
// file paths from a message meant for a client.
func Redact(msg string) string {
	msg = reAddress.ReplaceAllString(msg, "<address>")
	return rePath.ReplaceAllStringFunc(msg, func(m string) string {
		i := strings.IndexByte(m, '/')
		return m[:i] + "<path>"
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
