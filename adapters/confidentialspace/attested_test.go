package confidentialspace

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// logBuf collects a logger's JSON lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines contain every one of subs.
func (l *logBuf) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// attestedClient opens the vault's enclave client to m over the attested
// channel, as a daemon does (LogState on), logging into the returned buffer.
func attestedClient(t testing.TB, m *enclavetest.Mock, conns int) (*Enclave, *logBuf) {
	t.Helper()
	host, port, err := net.SplitHostPort(m.Addr)
	require.NoError(t, err)
	settings := m.Attested.Settings
	buf := &logBuf{}
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(Config{Host: host, Port: port, WIPProviderPath: "wip", EncryptionKeyPath: "key",
		Connections: conns, DialTimeout: 5 * time.Second, LogState: true, AttestedChannel: &settings}, log)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e, buf
}

func requestsTotal(m *enclavetest.Mock) int64 {
	var n int64
	for _, v := range m.Stats().Requests {
		n += v
	}
	return n
}

// TestAttestRefusedEnclaves: an enclave whose token fails a check — another
// image digest, a debug image, an expired token, a token bound to another
// TLS key — is refused by the vault: no request reaches it (the handshake
// ends before any application byte), requests fail at once with an error
// naming the claim, readiness gives the same cause, the pool logs it once
// whatever the number of attempts, and the dialer's error is
// enclaverpc.ErrRefused (the pool backs off).
func TestAttestRefusedEnclaves(t *testing.T) {
	cases := map[string]struct {
		opts  enclavetest.AttestedOptions
		claim string
	}{
		"another image digest": {enclavetest.AttestedOptions{Workload: func(w *attestationtest.Workload) {
			w.ImageDigest = "sha256:" + strings.Repeat("ab", 32)
		}}, attestation.ClaimImageDigest},
		"debug image": {enclavetest.AttestedOptions{Workload: func(w *attestationtest.Workload) { w.Debug = true }}, attestation.ClaimDebugStatus},
		"expired token": {enclavetest.AttestedOptions{Forge: func(c jwt.MapClaims) {
			now := time.Now().Truncate(time.Second)
			c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		}}, attestation.ClaimExpiry},
		"a launch environment that does not pin this daemon": {enclavetest.AttestedOptions{Workload: func(w *attestationtest.Workload) {
			w.Env = map[string]string{attestation.DefaultClientPinsEnv: attestation.PinOf([]byte("another daemon")).String()}
		}}, attestation.ClaimEnv + "." + attestation.DefaultClientPinsEnv},
		"token bound to another key": {enclavetest.AttestedOptions{Forge: func(c jwt.MapClaims) {
			c["eat_nonce"] = enclavetest.OtherKeyNonce(t)
		}}, attestation.ClaimNonce},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := enclavetest.StartAttested(t, c.opts)
			want := "claim " + c.claim + ":"

			// The dialer itself: refused, naming the claim.
			settings := m.Attested.Settings
			cl, err := settings.Client(nil)
			require.NoError(t, err)
			ctx := ctxT(t, 30*time.Second)
			_, err = attestedDialer(cl, m.Addr)(ctx)
			require.Error(t, err)
			require.ErrorIs(t, err, enclaverpc.ErrRefused)
			var ce *attestation.ClaimError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, c.claim, ce.Claim)
			require.Contains(t, err.Error(), want)

			// The vault: fails fast with the claim, readiness says it.
			direct := m.Stats().HandshakesRefused
			opened := time.Now()
			e, logs := attestedClient(t, m, 2)
			require.Eventually(t, func() bool {
				err := e.Ready(ctx)
				return err != nil && strings.Contains(err.Error(), want)
			}, 10*time.Second, 20*time.Millisecond)
			start := time.Now()
			_, err = e.Generate(ctx, tezos.Ed25519)
			require.ErrorContains(t, err, want)
			require.Equal(t, domain.KindUnavailable, domain.KindOf(err), "%v", err)
			require.Less(t, time.Since(start), 2*time.Second, "the request waited instead of failing with the cause")

			// Several attempts per connection, one log line, no request.
			require.Eventually(t, func() bool { return m.Stats().HandshakesRefused >= direct+4 }, 20*time.Second, 50*time.Millisecond)
			// The pool backs off as from an enclave that refuses (1 s
			// growing to 8 s: at most 4 attempts per connection in 3 s),
			// not as from one that is unreachable (50 ms growing to 1 s:
			// about 8).
			time.Sleep(time.Until(opened.Add(3 * time.Second)))
			require.LessOrEqual(t, m.Stats().HandshakesRefused-direct, int64(2*4), "refused handshakes in 3 s with 2 connections")
			require.Equal(t, 1, logs.count(`"level":"ERROR"`, want)+logs.count(`"level":"WARN"`, want), "the cause is logged once per change:\n%s", logs)
			require.Zero(t, requestsTotal(m), "a request reached a refused enclave: %v", m.Stats().Requests)
		})
	}
}

// tokenTimes returns the iat and exp of the enclave's current token.
func tokenTimes(t *testing.T, m *enclavetest.Mock) (iat, exp time.Time) {
	t.Helper()
	tok, err := m.Attested.Channel.CurrentToken()
	require.NoError(t, err)
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var c struct{ Iat, Exp int64 }
	require.NoError(t, json.Unmarshal(payload, &c))
	return time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
}

// TestAttestRefreshInBand: with 6 s tokens, one connection stays idle for
// longer than two token lifetimes (the pool's idle probes refresh the token
// in band when a quarter of its life is left), then carries a request
// every 100 ms across another refresh point: every request succeeds on
// the same connection (no redial, no new handshake) and the enclave
// answered AttestationToken requests along the way.
func TestAttestRefreshInBand(t *testing.T) {
	t.Parallel()
	const life = 6 * time.Second
	m := enclavetest.StartAttested(t, enclavetest.AttestedOptions{Lifetime: life})
	e, logs := attestedClient(t, m, 1)
	ctx := ctxT(t, time.Minute)
	sealed, err := e.Generate(ctx, tezos.Ed25519)
	require.NoError(t, err)
	pkh := sealed.PublicKey.Hash()
	msg := []byte("\x03refresh")
	sign := func() {
		t.Helper()
		sig, err := e.Sign(ctx, pkh, msg, 0)
		require.NoError(t, err)
		require.NoError(t, sealed.PublicKey.Verify(msg, sig, 0))
	}
	sign()
	accepted := m.Stats().Accepted
	require.EqualValues(t, 1, accepted)
	refreshes := m.Stats().Requests["AttestationToken"]

	// Idle for longer than two lifetimes of the token.
	time.Sleep(2*life + life/2)
	require.Greater(t, m.Stats().Requests["AttestationToken"], refreshes+1, "no refresh while idle")
	sign()
	require.Equal(t, accepted, m.Stats().Accepted, "the idle connection was redialled:\n%s", logs)

	// Busy across the next refresh point.
	_, exp := tokenTimes(t, m)
	refreshes = m.Stats().Requests["AttestationToken"]
	for deadline := exp.Add(life / 2); time.Now().Before(deadline); {
		sign()
		time.Sleep(100 * time.Millisecond)
	}
	require.Greater(t, m.Stats().Requests["AttestationToken"], refreshes, "no refresh while busy")
	require.Equal(t, accepted, m.Stats().Accepted, "the busy connection was redialled:\n%s", logs)
	require.NoError(t, e.Ready(ctx))
}

// TestAttestExpiredConnectionNotUsed: the launcher fails, so the enclave
// cannot renew its token; the daemon's connection is not used past the
// token's expiry (it is closed at that instant, and the enclave no longer
// has its session), new handshakes are refused while the enclave holds no
// valid token (the cause named), and once the launcher is back the pool
// redials and signs on a new connection.
func TestAttestExpiredConnectionNotUsed(t *testing.T) {
	t.Parallel()
	const life = 4 * time.Second
	m := enclavetest.StartAttested(t, enclavetest.AttestedOptions{Lifetime: life})
	e, logs := attestedClient(t, m, 1)
	ctx := ctxT(t, time.Minute)
	sealed, err := e.Generate(ctx, tezos.Ed25519)
	require.NoError(t, err)
	pkh := sealed.PublicKey.Hash()
	msg := []byte("\x03expiry")
	_, err = e.Sign(ctx, pkh, msg, 0)
	require.NoError(t, err)
	sessions := m.Sessions()
	require.Len(t, sessions, 1)
	old := sessions[0].Remote

	m.Attested.Launcher.SetFailing(true)
	_, exp := tokenTimes(t, m)
	// Until the expiry the connection works.
	for time.Until(exp) > 500*time.Millisecond {
		_, err := e.Sign(ctx, pkh, msg, 0)
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Until(exp) + 300*time.Millisecond)
	for _, s := range m.Sessions() {
		require.NotEqual(t, old, s.Remote, "the expired connection is still open")
	}
	// No valid token on the enclave: refused, with the cause.
	_, err = e.Sign(ctx, pkh, msg, 0)
	require.Error(t, err)
	require.Eventually(t, func() bool {
		err := e.Ready(ctx)
		return err != nil && strings.Contains(err.Error(), "attested channel")
	}, 10*time.Second, 20*time.Millisecond)

	m.Attested.Launcher.SetFailing(false)
	require.Eventually(t, func() bool { return e.Ready(ctx) == nil }, 20*time.Second, 50*time.Millisecond, "not recovered:\n%s", logs)
	sig, err := e.Sign(ctx, pkh, msg, 0)
	require.NoError(t, err)
	require.NoError(t, sealed.PublicKey.Verify(msg, sig, 0))
	sessions = m.Sessions()
	require.Len(t, sessions, 1)
	require.NotEqual(t, old, sessions[0].Remote)
}

// TestAttestRefreshExpired: the pool's Refresh never lets a connection
// past its token's expiry carry a request (even before the connection's
// own timer fires): it is closed and reported broken with ErrExpired.
func TestAttestRefreshExpired(t *testing.T) {
	m := enclavetest.StartAttested(t, enclavetest.AttestedOptions{Lifetime: 2 * time.Second})
	settings := m.Attested.Settings
	cl, err := settings.Client(nil)
	require.NoError(t, err)
	ctx := ctxT(t, 30*time.Second)
	nc, err := attestedDialer(cl, m.Addr)(ctx)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, refreshAttested(ctx, nc))
	time.Sleep(time.Until(nc.(*securechannel.Conn).ValidUntil()))
	err = refreshAttested(ctx, nc)
	require.True(t, errors.Is(err, securechannel.ErrExpired), "%v", err)
	_, err = nc.Write([]byte{0, 0, 0, 1, 0xa0})
	require.Error(t, err)
	// A plain connection is not the attested channel.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	require.Error(t, refreshAttested(ctx, a))
}

// processCPU returns this process's user + system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAttestVaultSign: an ed25519 Sign through the vault's pool (one
// caller, the daemon's whole path: pool, refresh check, framing, reply
// check, signature verification) to an in-process enclave, over the plain
// protocol and over the attested channel, in alternating blocks of 256
// requests so that both see the same load. Both ends run in this process:
// cpu-ns/op is the CPU of the daemon's and the enclave's sides together.
func BenchmarkAttestVaultSign(b *testing.B) {
	plainM := enclavetest.StartMock(b, enclavetest.ModeConfidentialSpace)
	attM := enclavetest.StartAttested(b, enclavetest.AttestedOptions{})
	plain := newClient(b, plainM.Addr, 1)
	att, _ := attestedClient(b, attM, 1)
	ctx := context.Background()
	type side struct {
		name string
		e    *Enclave
		pkh  tezos.PublicKeyHash
		n    int
		cpu  time.Duration
		wall time.Duration
	}
	sides := []*side{{name: "plain", e: plain}, {name: "attested", e: att}}
	for _, s := range sides {
		sealed, err := s.e.Generate(ctx, tezos.Ed25519)
		if err != nil {
			b.Fatal(err)
		}
		s.pkh = sealed.PublicKey.Hash()
	}
	msg := make([]byte, 128)
	b.ResetTimer()
	for done := 0; done < b.N; {
		for _, s := range sides {
			block := min(256, b.N-done)
			if block <= 0 {
				break
			}
			c0, w0 := processCPU(b), time.Now()
			for range block {
				if _, err := s.e.Sign(ctx, s.pkh, msg, 0); err != nil {
					b.Fatal(err)
				}
			}
			s.cpu += processCPU(b) - c0
			s.wall += time.Since(w0)
			s.n += block
			done += block
		}
	}
	b.StopTimer()
	for _, s := range sides {
		if s.n > 0 {
			b.ReportMetric(float64(s.cpu.Nanoseconds())/float64(s.n), "cpu-ns/op-"+s.name)
			b.ReportMetric(float64(s.wall.Nanoseconds())/float64(s.n), "wall-ns/op-"+s.name)
		}
	}
}

// TestAttestPeersThatAreNotAttestedEnclaves: a daemon configured for the
// attested channel meets an enclave speaking the plain protocol (it
// closes the connection on the ClientHello): refused (the pool backs off),
// the error asking whether it serves the attested channel, and no request
// decoded by it; and a peer that accepts and then never answers the
// handshake: the dial ends at dial_timeout as a timeout, not a refusal.
func TestAttestPeersThatAreNotAttestedEnclaves(t *testing.T) {
	t.Parallel()
	att := enclavetest.StartAttested(t, enclavetest.AttestedOptions{})
	settings := att.Attested.Settings
	cl, err := settings.Client(nil)
	require.NoError(t, err)

	plain := enclavetest.StartMock(t, enclavetest.ModeConfidentialSpace)
	ctx := ctxT(t, 30*time.Second)
	_, err = attestedDialer(cl, plain.Addr)(ctx)
	require.ErrorIs(t, err, enclaverpc.ErrRefused)
	require.ErrorContains(t, err, "is it serving the attested channel?")
	require.Zero(t, requestsTotal(plain), "the plain enclave decoded a request: %v", plain.Stats().Requests)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu   sync.Mutex
		held []net.Conn // accepted, never answered
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = attestedDialer(cl, ln.Addr().String())(dctx)
	require.Error(t, err)
	require.False(t, errors.Is(err, enclaverpc.ErrRefused), "a stalled handshake is not a refusal: %v", err)
	require.Less(t, time.Since(start), 5*time.Second)
}
