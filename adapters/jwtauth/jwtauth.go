// Package jwtauth is Sigil's JWT authentication of API clients, as Signatory
// configures and speaks it (server.jwt.users): a user logs in with its name
// and password and gets a token (HS256, signed with the user's secret,
// claims `user` and `exp`), then presents the token with its name on every
// request. Credentials rotate as Signatory's do: new_data holds the next
// password, secret and lifetime, and until old_cred_exp (UTC) both the old
// and the new credentials are accepted; after it, or at once without it,
// only the new ones. The HTTP adapter reads the headers and calls Login and
// Authenticate; errors are domain.KindUnauthorized and never contain a
// password, a secret or a token.
package jwtauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigil-signer/sigil/domain"
)

// DefaultTTL is a token's lifetime when jwt_exp is not set (Signatory's
// 60 minutes).
const DefaultTTL = 60 * time.Minute

// MaxTTL bounds jwt_exp.
const MaxTTL = 366 * 24 * time.Hour

// OldCredExpLayout is the format of old_cred_exp, a UTC time.
const OldCredExpLayout = "2006-01-02 15:04:05"

// Method is the only signing method issued and accepted.
const Method = "HS256"

// Credentials are one generation of a user's credentials.
type Credentials struct {
	Password string
	Secret   string
	// TTL is the lifetime of the tokens issued with these credentials;
	// zero means DefaultTTL.
	TTL time.Duration
}

// User is one configured user.
type User struct {
	Credentials
	// Next, when set, are the credentials replacing these (new_data).
	Next *Credentials
	// OldUntil is when the current credentials stop being accepted next to
	// Next (old_cred_exp); zero means Next replaces them at once. It has no
	// effect without Next.
	OldUntil time.Time
}

// ParseOldCredExp parses an old_cred_exp value ("YYYY-MM-DD hh:mm:ss",
// UTC).
func ParseOldCredExp(s string) (time.Time, error) {
	t, err := time.Parse(OldCredExpLayout, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("old_cred_exp %q: want a UTC time as YYYY-MM-DD hh:mm:ss", domain.Echo(s))
	}
	return t, nil
}

// CheckPassword applies Signatory's rule to a password: at least 16
// characters with an upper-case letter, a lower-case letter, a digit and a
// special character. The error never repeats the password.
func CheckPassword(p string) error { return checkStrength("password", p, 16) }

// CheckSecret applies Signatory's rule to a token secret: as for a
// password, with at least 32 characters.
func CheckSecret(s string) error { return checkStrength("secret", s, 32) }

func checkStrength(what, s string, min int) error {
	if len(s) < min {
		return fmt.Errorf("%s should be at least %d characters", what, min)
	}
	var upper, lower, digit, special bool
	for _, c := range s {
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		case c >= 32 && c <= 126:
			special = true
		}
	}
	switch {
	case !upper:
		return fmt.Errorf("%s should contain at least one uppercase character", what)
	case !lower:
		return fmt.Errorf("%s should contain at least one lowercase character", what)
	case !digit:
		return fmt.Errorf("%s should contain at least one digit", what)
	case !special:
		return fmt.Errorf("%s should contain at least one special character", what)
	}
	return nil
}

// CheckUser validates one user's configuration (name, credential strength,
// lifetimes, rotation). Errors name the user and the field, never a value.
func CheckUser(name string, u User) error {
	if name == "" || len(name) > MaxUserName || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 32 || r == 127 }) {
		return fmt.Errorf("user %q: a user name is 1 to %d printable characters", domain.Echo(name), MaxUserName)
	}
	check := func(field string, c Credentials) error {
		if err := CheckPassword(c.Password); err != nil {
			return fmt.Errorf("user %s: %s%w", name, field, err)
		}
		if err := CheckSecret(c.Secret); err != nil {
			return fmt.Errorf("user %s: %s%w", name, field, err)
		}
		if c.TTL < 0 || c.TTL > MaxTTL {
			return fmt.Errorf("user %s: %sjwt_exp: %v is out of range (1 minute to %v)", name, field, c.TTL, MaxTTL)
		}
		return nil
	}
	if err := check("", u.Credentials); err != nil {
		return err
	}
	if u.Next != nil {
		if err := check("new_data.", *u.Next); err != nil {
			return err
		}
		if equal(u.Next.Password, u.Password) || equal(u.Next.Secret, u.Secret) {
			return fmt.Errorf("user %s: new_data must change both the password and the secret", name)
		}
	}
	return nil
}

// MaxUserName bounds a user name.
const MaxUserName = 256

// Options tune the authenticator.
type Options struct {
	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
	// Logger receives the rotation state at start; nil discards.
	Logger *slog.Logger
}

// Auth issues and checks tokens for the configured users.
type Auth struct {
	users map[string]User
	now   func() time.Time
	// dummy is compared against when a user is unknown, so that a login
	// takes as long for an unknown user as for a wrong password.
	dummy [sha256.Size]byte
}

// New validates users and returns their authenticator. At least one user is
// required.
func New(users map[string]User, opts Options) (*Auth, error) {
	if len(users) == 0 {
		return nil, errors.New("server.jwt.users: no user configured")
	}
	a := &Auth{users: make(map[string]User, len(users)), now: opts.Now}
	if a.now == nil {
		a.now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	sort.Strings(names)
	now := a.now()
	for _, name := range names {
		u := users[name]
		if err := CheckUser(name, u); err != nil {
			return nil, fmt.Errorf("server.jwt.users: %w", err)
		}
		switch {
		case u.Next == nil:
		case u.OldUntil.IsZero() || !now.Before(u.OldUntil):
			log.Info("JWT: user's new credentials (new_data) are in force; the old ones are no longer accepted", "user", name)
		default:
			log.Info("JWT: user's old and new credentials are both accepted until old_cred_exp", "user", name, "old_cred_exp", u.OldUntil.UTC().Format(OldCredExpLayout)+" UTC")
		}
		a.users[name] = u
	}
	a.dummy = sha256.Sum256([]byte("sigil: no such user"))
	return a, nil
}

// active returns the credentials a user may use at now: the current ones,
// the new ones, or both during a rotation.
func (u User) active(now time.Time) []Credentials {
	if u.Next == nil {
		return []Credentials{u.Credentials}
	}
	if u.OldUntil.IsZero() || !now.Before(u.OldUntil) {
		return []Credentials{*u.Next}
	}
	return []Credentials{u.Credentials, *u.Next}
}

func unauthorized(format string, args ...any) error {
	return domain.Errorf(domain.KindUnauthorized, format, args...)
}

// equal compares two secrets in constant time, lengths included.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// Login checks a user's password and returns a new token signed with the
// secret of the credentials the password belongs to.
func (a *Auth) Login(user, password string) (string, error) {
	if user == "" || password == "" {
		return "", unauthorized("login needs the username and password headers")
	}
	u, ok := a.users[user]
	given := sha256.Sum256([]byte(password))
	if !ok {
		subtle.ConstantTimeCompare(given[:], a.dummy[:])
		return "", unauthorized("access denied: wrong username or password")
	}
	now := a.now()
	var match *Credentials
	for _, c := range u.active(now) {
		want := sha256.Sum256([]byte(c.Password))
		if subtle.ConstantTimeCompare(given[:], want[:]) == 1 && match == nil {
			match = &c
		}
	}
	if match == nil {
		return "", unauthorized("access denied: wrong username or password")
	}
	ttl := match.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		User:             user,
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(ttl))},
	})
	s, err := tok.SignedString([]byte(match.Secret))
	if err != nil {
		return "", domain.Errorf(domain.KindInternal, "issuing a token: %v", err)
	}
	return s, nil
}

// claims are the token's claims: Signatory's `user` and `exp`.
type claims struct {
	User string `json:"user"`
	jwt.RegisteredClaims
}

// Authenticate checks a token presented with the username header and
// returns the authenticated user. The token must be HS256, signed with one
// of the user's active secrets, unexpired, carry an expiry, and name the
// same user.
func (a *Auth) Authenticate(user, token string) (string, error) {
	if token == "" {
		return "", unauthorized("authentication required: log in with POST /login (username and password headers), then send Authorization: Bearer <token> and the username header")
	}
	if user == "" {
		return "", unauthorized("the username header is required with the token")
	}
	u, ok := a.users[user]
	secrets := jwt.VerificationKeySet{}
	if ok {
		for _, c := range u.active(a.now()) {
			secrets.Keys = append(secrets.Keys, []byte(c.Secret))
		}
	} else {
		// Verify against a key nobody has, so that an unknown user is
		// answered like a bad signature.
		secrets.Keys = append(secrets.Keys, a.dummy[:])
	}
	var cl claims
	p := jwt.NewParser(jwt.WithValidMethods([]string{Method}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(a.now))
	tok, err := p.ParseWithClaims(token, &cl, func(*jwt.Token) (any, error) { return secrets, nil })
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenMalformed):
			return "", unauthorized("malformed token")
		case tok != nil && tok.Method != nil && tok.Method.Alg() != Method:
			return "", unauthorized("token signing method %q is not accepted (only %s)", domain.Echo(tok.Method.Alg()), Method)
		case errors.Is(err, jwt.ErrTokenUnverifiable):
			return "", unauthorized("token cannot be verified (signing method %s only)", Method)
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			return "", unauthorized("token is not valid for user %q (unknown user, or a token not signed with its secret)", domain.Echo(user))
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return "", unauthorized("token has no expiry (exp)")
		case errors.Is(err, jwt.ErrTokenExpired):
			return "", unauthorized("token expired: log in again")
		}
		return "", unauthorized("token rejected: %s", domain.Echo(err.Error()))
	}
	if !ok {
		// Unreachable: nobody holds the dummy key.
		return "", unauthorized("token is not valid for user %q", domain.Echo(user))
	}
	if cl.User != user {
		return "", unauthorized("token was issued for another user than %q", domain.Echo(user))
	}
	return user, nil
}
