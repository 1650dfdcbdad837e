package securechannel_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// Token lifetimes here are 3 s: tokens carry whole seconds, and the
// schedule (enclave renews at half, client refreshes at three quarters)
// needs some room inside one lifetime.
const life = 3 * time.Second

func refresh(t *testing.T, conn *securechannel.Conn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return conn.RefreshIfDue(ctx)
}

// TestAttestRefreshLongLivedConnection stays on one connection across
// three token lifetimes, sending a request every 100 ms and refreshing when
// due: every request succeeds and the connection's validity moves forward.
func TestAttestRefreshLongLivedConnection(t *testing.T) {
	w := newWorld(t, life)
	e := w.enclave(t)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first := conn.ValidUntil()
	end := time.Now().Add(3 * life)
	signs, extensions := 0, 0
	last := first
	for time.Now().Before(end) {
		if err := refresh(t, conn); err != nil {
			t.Fatalf("refresh at %v before expiry: %v", time.Until(conn.ValidUntil()), err)
		}
		if u := conn.ValidUntil(); u.After(last) {
			extensions++
			last = u
		}
		if !time.Now().Before(conn.ValidUntil()) {
			t.Fatal("the connection outlived its token")
		}
		if _, err := sign(conn, []byte("still here")); err != nil {
			t.Fatalf("request %d: %v", signs, err)
		}
		signs++
		time.Sleep(100 * time.Millisecond)
	}
	if !last.After(first.Add(2 * life)) {
		t.Fatalf("valid until %v, first token %v: not refreshed", last, first)
	}
	if extensions < 3 {
		t.Fatalf("%d extensions in three lifetimes", extensions)
	}
	asked := int(e.frames.Load()) - signs
	if asked < extensions {
		t.Fatalf("%d AttestationToken requests for %d extensions", asked, extensions)
	}
	t.Logf("%d requests, %d AttestationToken requests, %d extensions, valid until +%v", signs, asked, extensions, last.Sub(first))
}

// TestAttestRefreshFailsConnectionCloses: the launcher stops answering, so
// the enclave cannot renew; the client keeps asking, gets nothing newer,
// and the connection closes when its token expires, at that instant.
func TestAttestRefreshFailsConnectionCloses(t *testing.T) {
	w := newWorld(t, life)
	e := w.enclave(t)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w.launcher.SetFailing(true)
	until := conn.ValidUntil()
	var failed error
	for time.Now().Before(until.Add(time.Second)) {
		_ = refresh(t, conn) // nothing newer, or the enclave's error
		if _, err := sign(conn, []byte("x")); err != nil {
			failed = err
			break
		}
		if !time.Now().Before(until.Add(50 * time.Millisecond)) {
			t.Fatal("a request succeeded after the token expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !errors.Is(failed, securechannel.ErrExpired) {
		t.Fatalf("request after expiry: %v", failed)
	}
	if now := time.Now(); now.Before(until) {
		t.Fatalf("closed %v before expiry", until.Sub(now))
	}
	if !conn.ValidUntil().Equal(until) {
		t.Fatalf("extended to %v without a new token", conn.ValidUntil())
	}
	select {
	case <-e.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the enclave's side of the connection stayed open")
	}
	// New connections are refused while the enclave has no token.
	_, err = dial(t, w.client(t), e.addr)
	if err == nil {
		t.Fatal("connected to an enclave without a valid token")
	}
	if serr := e.wantRefused(t); !errors.Is(serr, adattest.ErrNoToken) {
		t.Fatalf("enclave side: %v", serr)
	}
	reply, ok := answerToken(e.srv, enclavewire.AttestationTokenRequest())
	var rerr *enclavewire.RPCError
	if _, err := enclavewire.DecodeAttestationTokenReply(reply); !ok || !errors.As(err, &rerr) || !strings.Contains(err.Error(), "no valid attestation token") {
		t.Fatalf("AttestationToken without a token: %v, %v", ok, err)
	}
}

// TestAttestIdleConnectionExpires: a connection nobody uses or refreshes
// is closed by the client when its token expires; the enclave sees it
// close, and a later write fails with ErrExpired.
func TestAttestIdleConnectionExpires(t *testing.T) {
	w := newWorld(t, life)
	e := w.enclave(t)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	until := conn.ValidUntil()
	select {
	case <-e.closed:
		if now := time.Now(); now.Before(until) {
			t.Fatalf("closed %v before expiry", until.Sub(now))
		}
	case <-time.After(time.Until(until) + 2*time.Second):
		t.Fatal("the idle connection outlived its token")
	}
	if _, err := conn.Write([]byte{0, 0, 0, 1, 0xa0}); !errors.Is(err, securechannel.ErrExpired) {
		t.Fatalf("Write = %v", err)
	}
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, securechannel.ErrExpired) {
		t.Fatalf("Read = %v", err)
	}
	if !conn.RefreshDue() {
		t.Fatal("an expired connection is not due for refresh")
	}
}

// TestAttestNewHandshakeSeesRenewedToken: connections made after the
// enclave renewed its token get the new one in the certificate; an older
// connection keeps its own validity until it refreshes.
func TestAttestNewHandshakeSeesRenewedToken(t *testing.T) {
	w := newWorld(t, life)
	e := w.enclave(t)
	client := w.client(t)
	old, err := dial(t, client, e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	first := old.ValidUntil()
	deadline := time.Now().Add(life)
	for {
		conn, err := dial(t, client, e.addr)
		if err != nil {
			t.Fatal(err)
		}
		u := conn.ValidUntil()
		conn.Close()
		if u.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new handshakes never saw a renewed token")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !old.ValidUntil().Equal(first) {
		t.Fatal("the old connection was extended without a refresh")
	}
}

// flakyTokens gives a token for the handshake, then fails (an enclave
// whose renewals fail before its token expires).
type flakyTokens struct {
	tok   adattest.Token
	calls atomic.Int64
}

func (f *flakyTokens) Current() (adattest.Token, error) {
	if f.calls.Add(1) == 1 {
		return f.tok, nil
	}
	return adattest.Token{}, errors.New("launcher down")
}

// TestAttestRefreshEnclaveError: an enclave that answers AttestationToken
// with an error leaves the connection usable until its token expires, and
// the next attempt waits (RetryAt).
func TestAttestRefreshEnclaveError(t *testing.T) {
	w := newWorld(t, 0)
	key, nonce, err := securechannel.NewEphemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := adattest.NewLauncher(w.launcher.Socket).Token(context.Background(),
		adattest.TokenRequest{Audience: securechannel.DefaultAudience, Nonces: []string{nonce}, TokenType: adattest.TokenOIDC})
	if err != nil {
		t.Fatal(err)
	}
	tokens := &flakyTokens{tok: adattest.Token{Raw: raw, IssuedAt: time.Now().Add(-time.Minute), Expiry: time.Now().Add(time.Hour)}}
	srv, err := securechannel.NewServer(securechannel.ServerConfig{Key: key, Tokens: tokens, ClientPins: []attestation.Pin{w.key.Pin}})
	if err != nil {
		t.Fatal(err)
	}
	e := serveEnclave(t, srv)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	var rerr *enclavewire.RPCError
	if err := conn.Refresh(ctx); !errors.As(err, &rerr) || !strings.Contains(err.Error(), "launcher down") {
		t.Fatalf("Refresh = %v", err)
	}
	if conn.RefreshDue() {
		t.Fatal("retry not scheduled")
	}
	if got, err := sign(conn, []byte("still usable")); err != nil || string(got) != "still usable" {
		t.Fatalf("%q, %v", got, err)
	}
}

// TestAttestRefreshWrongToken: a token served in band is verified like the
// handshake's; one bound to another key closes the connection.
func TestAttestRefreshWrongToken(t *testing.T) {
	w := newWorld(t, 0)
	key, nonce, _ := securechannel.NewEphemeralKey()
	_, otherNonce, _ := securechannel.NewEphemeralKey()
	req := adattest.TokenRequest{Audience: securechannel.DefaultAudience, Nonces: []string{nonce}, TokenType: adattest.TokenOIDC}
	lc := adattest.NewLauncher(w.launcher.Socket)
	good, err := lc.Token(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Nonces = []string{otherNonce}
	bad, err := lc.Token(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	tokens := &switchTokens{}
	tokens.raw.Store(&good)
	srv, err := securechannel.NewServer(securechannel.ServerConfig{Key: key, Tokens: tokens, ClientPins: []attestation.Pin{w.key.Pin}})
	if err != nil {
		t.Fatal(err)
	}
	e := serveEnclave(t, srv)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	tokens.raw.Store(&bad)
	err = conn.Refresh(context.Background())
	if claimOf(err) != attestation.ClaimNonce {
		t.Fatalf("Refresh = %v", err)
	}
	if _, err := sign(conn, []byte("x")); err == nil {
		t.Fatal("the connection stayed open")
	}
}

type switchTokens struct{ raw atomic.Pointer[string] }

func (s *switchTokens) Current() (adattest.Token, error) {
	return adattest.Token{Raw: *s.raw.Load(), IssuedAt: time.Now().Add(-time.Minute), Expiry: time.Now().Add(time.Hour)}, nil
}
