package attestation

import "time"

// The refresh schedule of tokens, on both ends of the channel. A token's
// lifetime is exp − iat (Google's clock on both sides, so skew cancels).
//
//   - The enclave renews its token halfway through the lifetime (RenewAt),
//     and retries with backoff until the token expires; it never serves an
//     expired one.
//   - A client asks for the enclave's current token when a quarter of the
//     lifetime is left (RefreshAt): by then the enclave has held a newer one
//     for a quarter of the lifetime. If the enclave's answer is no newer (its
//     renewals are failing), the client asks again when a quarter of the
//     time left has passed (RetryAt). When the token expires the client
//     closes the connection.

// MinRetry is the shortest wait between two attempts to renew or refresh.
const MinRetry = 50 * time.Millisecond

// RenewAt returns when an enclave that fetched, at fetched (its clock), a
// token issued at iat and expiring at exp asks for a new one: halfway
// through the lifetime.
func RenewAt(fetched, iat, exp time.Time) time.Time {
	return fetched.Add(lifetime(iat, exp) / 2)
}

// RefreshAt returns when a client holding a token issued at iat and
// expiring at exp asks the enclave for its current token: when a quarter of
// the lifetime is left.
func RefreshAt(iat, exp time.Time) time.Time {
	return exp.Add(-lifetime(iat, exp) / 4)
}

// RetryAt returns when to try again, at now, after an attempt that did not
// extend a token valid until until: once a quarter of the time left has
// passed, but not sooner than MinRetry.
func RetryAt(now, until time.Time) time.Time {
	return now.Add(max(until.Sub(now)/4, MinRetry))
}

func lifetime(iat, exp time.Time) time.Duration {
	return max(exp.Sub(iat), 0)
}
