package httpapi

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The login limits with a clock the test moves: the burst, the refusal
// with its wait, the refill crossing each expiry, and everything full again
// after an idle period longer than every refill.
func TestLoginLimiterClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLoginLimiter()
	l.now = func() time.Time { return now }

	// Per address: a burst of 10 attempts, then one per second.
	for i := range loginAddrBurst {
		_, _, ok := l.allow("10.0.0.1", fmt.Sprint("user", i))
		require.True(t, ok, "attempt %d", i+1)
	}
	retry, which, ok := l.allow("10.0.0.1", "someone")
	require.False(t, ok)
	assert.Equal(t, "address", which)
	assert.InDelta(t, time.Second, retry, float64(10*time.Millisecond))
	_, _, ok = l.allow("10.0.0.2", "someone")
	assert.True(t, ok, "another address is not limited")
	now = now.Add(999 * time.Millisecond)
	_, _, ok = l.allow("10.0.0.1", "someone")
	assert.False(t, ok, "before the refill")
	now = now.Add(2 * time.Millisecond)
	_, _, ok = l.allow("10.0.0.1", "someone")
	assert.True(t, ok, "after the refill")

	// Per user, failures only, from any address: 100, then one a second.
	for i := range loginUserBurst {
		_, _, ok := l.allow(fmt.Sprintf("10.1.%d.%d", i/200, i%200), "alice")
		require.True(t, ok)
		l.failed("alice")
	}
	retry, which, ok = l.allow("10.2.0.1", "alice")
	require.False(t, ok)
	assert.Equal(t, "user", which)
	assert.InDelta(t, time.Second, retry, float64(10*time.Millisecond))
	_, _, ok = l.allow("10.2.0.1", "bob")
	assert.True(t, ok, "another user is not limited")
	now = now.Add(time.Second + time.Millisecond)
	_, _, ok = l.allow("10.2.0.2", "alice")
	assert.True(t, ok)

	// One address alone cannot lock a user out: held to one attempt a
	// second, its failures never empty the user's allowance.
	now = now.Add(time.Hour)
	for range 600 {
		now = now.Add(100 * time.Millisecond)
		if _, _, ok := l.allow("10.9.9.9", "dave"); ok {
			l.failed("dave")
		}
	}
	_, _, ok = l.allow("10.8.8.8", "dave")
	assert.True(t, ok, "the user is locked out by one address")

	// Successful logins do not count against the user.
	for i := range 3 * loginUserBurst {
		now = now.Add(time.Second)
		_, _, ok := l.allow(fmt.Sprintf("10.3.0.%d", i), "carol")
		require.True(t, ok)
	}

	// Idle for an hour: every bucket is full again.
	now = now.Add(time.Hour)
	for i := range loginAddrBurst {
		_, _, ok := l.allow("10.0.0.1", "alice")
		require.True(t, ok, "attempt %d after the idle hour", i+1)
		l.failed("alice")
	}
	_, _, ok = l.allow("10.0.0.1", "alice")
	assert.False(t, ok, "and limited again after its burst")
}

// The tracked addresses are bounded: past maxLimiters, idle ones are
// dropped; if none is idle, new ones share one bucket (still limited).
func TestLimitersBounded(t *testing.T) {
	now := time.Unix(0, 0)
	ls := newLimiters(1, 2)
	for i := range maxLimiters {
		ls.get(fmt.Sprint(i), now).AllowN(now, 1) // none idle
	}
	require.Len(t, ls.m, maxLimiters)
	a, b := ls.get("new-1", now), ls.get("new-2", now)
	assert.Same(t, a, b, "beyond the bound, new keys share the overflow bucket")
	assert.Len(t, ls.m, maxLimiters)
	later := now.Add(time.Minute)
	ls.get("new-3", later)
	assert.Len(t, ls.m, 1, "idle buckets are dropped when the bound is reached")
}

// syncBuf is a log buffer safe for timers' goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Repeated failures of one client make one line at once and one summary
// when the window ends (the window is crossed); another client or path
// has its own line; a new window starts afresh.
func TestFailureLogAggregates(t *testing.T) {
	var buf syncBuf
	f := newFailureLog(slog.New(slog.NewTextHandler(&buf, nil)), 200*time.Millisecond)
	for range 1000 {
		f.record(failure{client: "10.0.0.1", method: "POST", path: "/login", status: 401, msg: "access denied"})
	}
	f.record(failure{client: "10.0.0.2", method: "POST", path: "/login", status: 401, msg: "access denied"})
	f.record(failure{client: "10.0.0.1", method: "POST", path: "/keys/tz1", status: 403, msg: "not authorized"})
	out := buf.String()
	assert.Equal(t, 3, strings.Count(out, `msg="request failed"`), out)
	require.Eventually(t, func() bool { return strings.Contains(buf.String(), "repeated=999") }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, strings.Count(buf.String(), "request failed, repeated"), "clients with one failure have no summary")
	f.record(failure{client: "10.0.0.1", method: "POST", path: "/login", status: 401, msg: "access denied"})
	assert.Equal(t, 4, strings.Count(buf.String(), `msg="request failed"`), "a new window starts with a line")
}
