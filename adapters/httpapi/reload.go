package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// ReloadGuard is the client authentication in force when a reload is
// asked: the JWT authenticator (nil without server.jwt) and the
// server-wide authorized client keys (none: no signature needed).
type ReloadGuard struct {
	Auth           Authenticator
	AuthorizedKeys []tezos.PublicKey
}

// ReloadOptions configure ReloadHandler.
type ReloadOptions struct {
	// Reload applies the configuration anew and returns what changed, to
	// answer as JSON. An error wrapping signer.ErrReloadRefused is the
	// configuration's fault (422); others are the kind's status.
	Reload func(ctx context.Context) (any, error)
	// Guard returns the authentication in force now.
	Guard func() ReloadGuard
	// Burst and Every bound the reloads accepted: Burst at once, then one
	// more every Every (defaults 3 and 10s).
	Burst int
	Every time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Reload rate defaults.
const (
	DefaultReloadBurst = 3
	DefaultReloadEvery = 10 * time.Second
)

// ReloadHandler serves POST /reload (Web3Signer's endpoint, on the
// utility listener): it applies the configuration file anew and answers
// when it is done, 200 with what changed, or an error with the reason
// (the running configuration then stays). Web3Signer answers 200 at once
// and reloads in the background; Sigil answers with the outcome, so that
// a script knows whether its change is in force.
//
// The client authenticates as on the signer API: with server.jwt, a
// bearer token and the username header (401 otherwise); with
// server.authorized_keys, ?timestamp= (Unix seconds) and ?authentication=,
// the signature of signer.ReloadMessage(timestamp) by an authorized key
// (401 missing, stale or reused; 400 unreadable; 403 by another key).
// Accepted requests are rate-limited (429 with Retry-After) so that an
// open endpoint cannot be used to burn CPU or KMS calls.
func ReloadHandler(o ReloadOptions) http.Handler {
	if o.Burst <= 0 {
		o.Burst = DefaultReloadBurst
	}
	if o.Every <= 0 {
		o.Every = DefaultReloadEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &reloadHandler{o: o, bucket: tokenBucket{burst: float64(o.Burst), every: o.Every}}
	return h
}

type reloadHandler struct {
	o      ReloadOptions
	auth   signer.ReloadAuth
	bucket tokenBucket
}

func (h *reloadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed("POST").ServeHTTP(w, r)
		return
	}
	if err := h.authenticate(r); err != nil {
		status := StatusFor(err)
		h.o.Logger.Warn("reload request refused", "client", clientIP(r), "status", status, "error", bound(err.Error()))
		writeError(w, status, err.Error())
		return
	}
	if wait, ok := h.bucket.take(h.o.Now()); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		h.o.Logger.Warn("reload request refused: too many reloads", "client", clientIP(r), "retry_after_s", secs)
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many reloads: at most %d at once, then one every %s; retry in %d s", h.o.Burst, h.o.Every, secs))
		return
	}
	// The reload runs to its end even if the client goes away: it is
	// bounded by its own timeout, and only then swapped in whole.
	res, err := h.o.Reload(context.WithoutCancel(r.Context()))
	if err != nil {
		status := StatusFor(err)
		if errors.Is(err, signer.ErrReloadRefused) {
			status = http.StatusUnprocessableEntity
		}
		// The log has the whole message; the client gets it without
		// host paths and addresses.
		writeError(w, status, Redact(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// authenticate applies the authentication in force: the JWT and the
// signature by an authorized key, each when configured.
func (h *reloadHandler) authenticate(r *http.Request) error {
	g := h.o.Guard()
	if g.Auth != nil {
		tok, err := header(r, "Authorization", maxTokenHeader)
		if err != nil {
			return err
		}
		if scheme, rest, ok := strings.Cut(tok, " "); ok {
			if !strings.EqualFold(scheme, "Bearer") {
				return domain.Errorf(domain.KindUnauthorized, "Authorization: want the Bearer scheme, got %q", domain.Echo(scheme))
			}
			tok = strings.TrimSpace(rest)
		}
		user, err := header(r, "username", maxUserHeader)
		if err != nil {
			return err
		}
		if _, err := g.Auth.Authenticate(user, tok); err != nil {
			return err
		}
	}
	if len(g.AuthorizedKeys) == 0 {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "malformed query string: %s", domain.Echo(err.Error()))
	}
	for _, name := range []string{"timestamp", "authentication"} {
		if n := len(q[name]); n > 1 {
			return domain.Errorf(domain.KindInvalid, "query parameter %q given %d times", name, n)
		}
	}
	var ts int64
	if v := q.Get("timestamp"); v != "" {
		if ts, err = strconv.ParseInt(v, 10, 64); err != nil {
			return domain.Errorf(domain.KindInvalid, "timestamp %q: want the Unix time in seconds", domain.Echo(v))
		}
	} else if q.Get("authentication") != "" {
		return domain.Errorf(domain.KindInvalid, "authentication without ?timestamp=: give the Unix time (seconds) that was signed")
	}
	_, err = h.auth.Verify(g.AuthorizedKeys, ts, q.Get("authentication"), h.o.Now())
	return err
}

// tokenBucket admits burst events at once, then one per every.
type tokenBucket struct {
	mu     sync.Mutex
	burst  float64
	every  time.Duration
	tokens float64
	last   time.Time
}

// take consumes a token at now; when there is none it reports how long
// until there is one.
func (b *tokenBucket) take(now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = math.Min(b.burst, b.tokens+float64(d)/float64(b.every))
	}
	if !now.Before(b.last) {
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) * float64(b.every)), false
}

// Rebind returns the API over s with the authenticator auth (nil: no JWT),
// sharing a's per-client state (the login limits, the aggregated failure
// log): the signer API of a new snapshot of the signing service (keys
// loaded, a reload) keeps counting where the previous one was.
func (a *API) Rebind(s Signer, auth Authenticator) *API {
	b := *a
	b.s = s
	b.opts.Auth = auth
	return &b
}
