package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Login attempts are rate-limited, per client address and per user: a
// password is checked in constant time and strong by rule, but thousands of
// attempts a second cost CPU, fill the log and keep guessing. Every attempt
// counts against its address; failed ones also against the user named
// (from any address), so a guess at one user spread over many addresses
// slows down too. The user's allowance is the larger: one address alone,
// held to one attempt a second, cannot use it up and lock the user out
// (a baker renews its token with a login). Over either limit the answer is
// 429 with Retry-After, and the password is not checked.
const (
	loginAddrRate  = rate.Limit(1) // attempts per second per address…
	loginAddrBurst = 10            // …after a burst of 10
	loginUserRate  = rate.Limit(1) // failures per second per user…
	loginUserBurst = 100           // …after a burst of 100
	// maxLimiters bounds the addresses (and users) tracked; beyond it,
	// idle ones are dropped, and then new ones share one limiter.
	maxLimiters = 4096
)

// limiters is a bounded set of token buckets keyed by address or user.
type limiters struct {
	r     rate.Limit
	burst int

	mu       sync.Mutex
	m        map[string]*rate.Limiter
	overflow *rate.Limiter
}

func newLimiters(r rate.Limit, burst int) *limiters {
	return &limiters{r: r, burst: burst, m: map[string]*rate.Limiter{}, overflow: rate.NewLimiter(r, burst)}
}

func (l *limiters) get(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[key]; ok {
		return lim
	}
	if len(l.m) >= maxLimiters {
		for k, lim := range l.m { // drop the full (idle) buckets
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxLimiters {
			return l.overflow
		}
	}
	lim := rate.NewLimiter(l.r, l.burst)
	l.m[key] = lim
	return lim
}

// loginLimiter limits POST /login.
type loginLimiter struct {
	addr, user *limiters
	now        func() time.Time
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{addr: newLimiters(loginAddrRate, loginAddrBurst), user: newLimiters(loginUserRate, loginUserBurst), now: time.Now}
}

// allow takes one attempt of addr for user; when refused it returns how
// long to wait and which limit applied.
func (l *loginLimiter) allow(addr, user string) (time.Duration, string, bool) {
	now := l.now()
	u := l.user.get(user, now)
	if u.TokensAt(now) < 1 {
		return wait(u, now), "user", false
	}
	a := l.addr.get(addr, now)
	if r := a.ReserveN(now, 1); r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return wait(a, now), "address", false
	}
	return 0, "", true
}

// failed counts a failed attempt against user.
func (l *loginLimiter) failed(user string) {
	now := l.now()
	l.user.get(user, now).AllowN(now, 1)
}

// wait is how long until lim has a token.
func wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// writeTooMany answers 429 with Retry-After (whole seconds, at least 1).
func writeTooMany(w http.ResponseWriter, retry time.Duration, which string) {
	secs := int((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many login attempts for this %s: retry in %d s", which, secs))
}

// failureLog aggregates the log lines of repeated client failures
// (authentication refusals, rate-limited logins): the first of a client
// and kind in a window is logged at once, the others are counted and
// reported in one line when the window ends. 4,120 wrong logins in 3 s
// were 4,120 warnings, each written at once.
type failureLog struct {
	log    *slog.Logger
	window time.Duration

	mu   sync.Mutex
	seen map[failureKey]*failureCount
}

type failureKey struct{ client, path string }

type failureCount struct {
	n        int
	last     string          // the last error, for the summary
	lastUser string          // the last user named, for the summary
	users    map[string]bool // the users named (at most maxUsersCounted)
}

// maxUsersCounted bounds the distinct users counted per client and
// window.
const maxUsersCounted = 1000

// failure is one failed request of a client.
type failure struct {
	ctx                  context.Context // the request's (its id, arrival)
	client, method, path string
	status               int
	msg                  string
	// user is the user the request named (the username header), shortened
	// and as safe to log as Echo makes it; "" when none.
	user string
}

// failureWindow is the aggregation window.
const failureWindow = 10 * time.Second

func newFailureLog(log *slog.Logger, window time.Duration) *failureLog {
	return &failureLog{log: log, window: window, seen: map[failureKey]*failureCount{}}
}

// record logs one failure of a client on a path (at warning level, with
// the request's fields), or counts it when one was logged in the current
// window.
func (f *failureLog) record(fl failure) {
	k := failureKey{client: fl.client, path: fl.path}
	f.mu.Lock()
	if _, ok := f.seen[k]; !ok && len(f.seen) >= maxLimiters {
		k.client = "(other clients)"
	}
	if c, ok := f.seen[k]; ok {
		c.n++
		c.last = fl.msg
		if fl.user != "" {
			c.lastUser = fl.user
			if len(c.users) < maxUsersCounted {
				c.users[fl.user] = true
			}
		}
		f.mu.Unlock()
		return
	}
	f.seen[k] = &failureCount{users: map[string]bool{}}
	f.mu.Unlock()
	ctx := fl.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	attrs := []slog.Attr{slog.String("method", fl.method), slog.String("path", fl.path), slog.Int("status", fl.status), slog.String("client", k.client)}
	if fl.user != "" {
		attrs = append(attrs, slog.String("user", fl.user))
	}
	f.log.LogAttrs(ctx, slog.LevelWarn, "request failed", append(attrs, slog.String("error", fl.msg))...)
	time.AfterFunc(f.window, func() {
		f.mu.Lock()
		c := f.seen[k]
		delete(f.seen, k)
		f.mu.Unlock()
		if c == nil || c.n == 0 {
			return
		}
		attrs := []slog.Attr{slog.String("path", fl.path), slog.String("client", k.client), slog.Int("repeated", c.n), slog.Duration("window", f.window)}
		if len(c.users) > 0 {
			attrs = append(attrs, slog.Int("users", len(c.users)), slog.String("last_user", c.lastUser))
		}
		f.log.LogAttrs(context.Background(), slog.LevelWarn, "request failed, repeated", append(attrs, slog.String("last_error", c.last))...)
	})
}
