package attestation_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
)

func request() attestation.TokenRequest {
	return attestation.TokenRequest{Audience: audience, Nonces: []string{keyNonce}, TokenType: attestation.TokenOIDC}
}

func TestAttestLauncherToken(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	l := attestationtest.NewLauncher(t, iss, workload())
	ctx := context.Background()
	lc := attestation.NewLauncher(l.Socket)
	for _, typ := range []attestation.TokenType{attestation.TokenOIDC, attestation.TokenPKI} {
		r := request()
		r.TokenType = typ
		tok, err := lc.Token(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		// The token verifies as a relying party verifies it.
		cfg := attestation.VerifierConfig{Expectations: expectations(iss), HTTPClient: iss.Client, TokenType: typ, PKIRoots: iss.PKIRoots()}
		if _, err := newVerifier(t, cfg).Verify(ctx, tok, keyNonce); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}

	// Requests outside the documented limits fail before reaching the
	// launcher, with the limit named.
	for name, r := range map[string]attestation.TokenRequest{
		"no audience":    {Nonces: []string{keyNonce}, TokenType: attestation.TokenOIDC},
		"long audience":  {Audience: strings.Repeat("a", 513), TokenType: attestation.TokenOIDC},
		"short nonce":    {Audience: audience, Nonces: []string{"1234567"}, TokenType: attestation.TokenOIDC},
		"long nonce":     {Audience: audience, Nonces: []string{strings.Repeat("n", 89)}, TokenType: attestation.TokenOIDC},
		"seven nonces":   {Audience: audience, Nonces: []string{keyNonce, keyNonce, keyNonce, keyNonce, keyNonce, keyNonce, keyNonce}, TokenType: attestation.TokenOIDC},
		"unknown type":   {Audience: audience, TokenType: "JWT"},
		"empty type too": {Audience: audience},
	} {
		if _, err := lc.Token(ctx, r); err == nil || !strings.Contains(err.Error(), "token request") {
			t.Errorf("%s: %v", name, err)
		}
	}
	before := l.Requests()
	l.SetFailing(true)
	_, err := lc.Token(ctx, request())
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), l.Socket) {
		t.Fatalf("failing launcher: %v", err)
	}
	if l.Requests() != before+1 {
		t.Fatalf("requests %d, want %d", l.Requests(), before+1)
	}
	_, err = attestation.NewLauncher(filepath.Join(t.TempDir(), "none.sock")).Token(ctx, request())
	if err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("no launcher: %v", err)
	}
	if got := attestation.NewLauncher("").Socket(); got != attestation.DefaultLauncherSocket {
		t.Fatalf("default socket %q", got)
	}
}

// TestAttestLauncherReplies: a launcher reply that is not a token is an
// error naming what was wrong.
func TestAttestLauncherReplies(t *testing.T) {
	for name, tc := range map[string]struct {
		body, want string
	}{
		"not a JWT": {"hello", "not a JWT"},
		"too long":  {strings.Repeat("a.b.c", 20000), "longer than"},
	} {
		t.Run(name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "sigil-l-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "s")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.body)) })}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			_, err = attestation.NewLauncher(sock).Token(context.Background(), request())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Token = %v, want %q", err, tc.want)
			}
		})
	}
}

func newSource(t *testing.T, l *attestationtest.Launcher) *attestation.Source {
	t.Helper()
	s, err := attestation.NewSource(attestation.SourceConfig{
		Fetcher: attestation.NewLauncher(l.Socket), Request: request(),
		RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestAttestSourceRenews stays across several token lifetimes: the source
// always has a valid token, and renewed it about twice per lifetime.
func TestAttestSourceRenews(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	w := workload()
	w.Lifetime = 2 * time.Second
	l := attestationtest.NewLauncher(t, iss, w)
	s := newSource(t, l)
	if _, err := s.Current(); !errors.Is(err, attestation.ErrNoToken) {
		t.Fatalf("Current before Start = %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, err := s.Current()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(7 * time.Second) // 3.5 lifetimes
	for time.Now().Before(deadline) {
		tok, err := s.Current()
		if err != nil {
			t.Fatalf("no token at %v: %v", time.Since(first.Fetched), err)
		}
		if !tok.ValidAt(time.Now()) {
			t.Fatalf("expired token served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	last, _ := s.Current()
	if !last.Expiry.After(first.Expiry.Add(4 * time.Second)) {
		t.Fatalf("token not renewed: first exp %v, last %v", first.Expiry, last.Expiry)
	}
	// About two renewals per lifetime: between 4 and 10 tokens in 7 s.
	if n := l.Issued(); n < 4 || n > 10 {
		t.Fatalf("%d tokens issued in 3.5 lifetimes", n)
	}
}

// TestAttestSourceExpires: when the launcher stops answering, the source
// keeps its token until it expires, then returns none (never an expired
// token), and recovers when the launcher is back.
func TestAttestSourceExpires(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	w := workload()
	w.Lifetime = 2 * time.Second
	l := attestationtest.NewLauncher(t, iss, w)
	s := newSource(t, l)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Current()
	l.SetFailing(true)
	time.Sleep(time.Until(tok.Expiry) + 300*time.Millisecond)
	_, err := s.Current()
	if !errors.Is(err, attestation.ErrNoToken) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Current after expiry = %v", err)
	}
	if n := l.Requests(); n < 3 {
		t.Fatalf("only %d requests: the source did not retry", n)
	}
	l.SetFailing(false)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := s.Current(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the source did not recover")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAttestSourceStart(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	l := attestationtest.NewLauncher(t, iss, workload())
	l.SetFailing(true)
	s := newSource(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := s.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Start = %v", err)
	}
	// Start retries until the launcher answers.
	go func() { time.Sleep(200 * time.Millisecond); l.SetFailing(false) }()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Tokens that are not what was asked for are refused.
	for name, mut := range map[string]func(jwt.MapClaims){
		"other audience": func(c jwt.MapClaims) { c["aud"] = "x" },
		"no nonce":       func(c jwt.MapClaims) { delete(c, "eat_nonce") },
		"no exp":         func(c jwt.MapClaims) { delete(c, "exp") },
		"expired": func(c jwt.MapClaims) {
			c["exp"] = time.Now().Add(-time.Minute).Unix()
			c["iat"] = time.Now().Add(-time.Hour).Unix()
		},
	} {
		w := workload()
		w.Mutate = mut
		l2 := attestationtest.NewLauncher(t, iss, w)
		s2 := newSource(t, l2)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := s2.Start(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "launcher token") {
			t.Errorf("%s: Start = %v", name, err)
		}
	}
	if _, err := attestation.NewSource(attestation.SourceConfig{Fetcher: attestation.NewLauncher(l.Socket)}); err == nil {
		t.Fatal("a source without audience")
	}
}

// TestAttestSourceFetchTimeout: a launcher that hangs costs each attempt
// FetchTimeout, not more; the source gets its token once it answers.
func TestAttestSourceFetchTimeout(t *testing.T) {
	iss := attestationtest.NewIssuer(t)
	l := attestationtest.NewLauncher(t, iss, workload())
	l.SetDelay(5 * time.Second)
	s, err := attestation.NewSource(attestation.SourceConfig{
		Fetcher: attestation.NewLauncher(l.Socket), Request: request(),
		RetryInitial: 50 * time.Millisecond, FetchTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = s.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("Start = %v after %v", err, time.Since(start))
	}
	if n := l.Requests(); n < 3 {
		t.Fatalf("%d attempts in 1 s with a 100 ms timeout", n)
	}
	l.SetDelay(0)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}
