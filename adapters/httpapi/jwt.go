package httpapi

import (
	"context"
	"net"
	"net/http"
	"strings"

	"github.com/sigil-signer/sigil/domain"
)

// Authenticator checks JWT credentials (Signatory's server.jwt). The HTTP
// API reads the headers and answers; the authenticator decides. Errors are
// domain errors (KindUnauthorized for a refusal) safe to show to clients.
type Authenticator interface {
	// Login checks a user's password and returns a new token.
	Login(user, password string) (string, error)
	// Authenticate checks a token presented with the username header and
	// returns the authenticated user.
	Authenticate(user, token string) (string, error)
}

// Bounds on the authentication headers read (the listener bounds all
// headers together at 64 KiB).
const (
	maxUserHeader     = 256
	maxPasswordHeader = 1024
	maxTokenHeader    = 8192
)

// authMethodJWT is the auth_method label of JWT failures.
const authMethodJWT = "jwt"

type userKey struct{}

// userFrom returns the JWT user the request was authenticated as, or "".
func userFrom(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

// clientIP returns the IP address of the request's peer, or "".
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return ""
	}
	return ip.String()
}

// header returns the single value of header name, bounded to max bytes.
func header(r *http.Request, name string, max int) (string, error) {
	vals := r.Header.Values(name)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", domain.Errorf(domain.KindUnauthorized, "header %s given %d times", name, len(vals))
	case len(vals[0]) > max:
		return "", domain.Errorf(domain.KindUnauthorized, "header %s exceeds %d bytes", name, max)
	}
	return vals[0], nil
}

// login serves POST /login: headers username and password, 201 with the
// token as a plain-text body (as Signatory answers).
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	user, err := header(r, "username", maxUserHeader)
	if err == nil {
		if retry, which, ok := a.logins.allow(clientIP(r), user); !ok {
			a.failures.record(failure{ctx: r.Context(), client: clientIP(r), method: r.Method, path: r.URL.Path, status: http.StatusTooManyRequests,
				msg: "too many login attempts for this " + which, user: echoUser(user)})
			writeTooMany(w, retry, which)
			if a.opts.Observer != nil {
				a.opts.Observer.AuthenticationFailed(http.StatusTooManyRequests, authMethodJWT, clientIP(r))
			}
			return
		}
		var pass string
		if pass, err = header(r, "password", maxPasswordHeader); err == nil {
			var tok string
			if tok, err = a.opts.Auth.Login(user, pass); err != nil {
				a.logins.failed(user)
			} else {
				a.log.InfoContext(r.Context(), "JWT login", "user", echoUser(user))
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte(tok))
				return
			}
		}
	}
	a.authFailed(w, r, err)
}

// echoUser is a user name from a request's username header as log lines
// repeat it: shortened (domain.Echo), and not at all when it looks like a
// secret key (a key or a password typed into the wrong header cannot be
// told from a name; a secret key can).
func echoUser(user string) string {
	if domain.LooksSecret(user) {
		return domain.NotRepeated
	}
	return domain.Echo(user)
}

// userOf is the user a request names (its username header), for the log.
func userOf(r *http.Request) string {
	vals := r.Header.Values("username")
	if len(vals) != 1 {
		return ""
	}
	return echoUser(vals[0])
}

// requireToken authenticates a request to an endpoint with the
// Authorization (Bearer) and username headers, as Signatory's JWT
// middleware does, and puts the user into the request's context.
func (a *API) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := header(r, "Authorization", maxTokenHeader)
		if err != nil {
			a.authFailed(w, r, err)
			return
		}
		if scheme, rest, ok := strings.Cut(tok, " "); ok {
			if !strings.EqualFold(scheme, "Bearer") {
				a.authFailed(w, r, domain.Errorf(domain.KindUnauthorized, "Authorization: want the Bearer scheme, got %q", domain.Echo(scheme)))
				return
			}
			tok = strings.TrimSpace(rest)
		}
		user, err := header(r, "username", maxUserHeader)
		if err == nil {
			user, err = a.opts.Auth.Authenticate(user, tok)
		}
		if err != nil {
			a.authFailed(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

// authFailed answers a JWT failure (401 for every refusal) and reports it
// to the observer.
func (a *API) authFailed(w http.ResponseWriter, r *http.Request, err error) {
	status := a.failRepeated(w, r, err)
	if a.opts.Observer != nil {
		a.opts.Observer.AuthenticationFailed(status, authMethodJWT, clientIP(r))
	}
}
