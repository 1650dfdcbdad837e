package securechannel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// enclave is a test server of the enclave protocol over the attested
// channel: it answers AttestationToken through the Server and echoes the
// message of every Sign request.
type enclave struct {
	srv     *securechannel.Server
	addr    string
	frames  atomic.Int64 // application frames received
	refused chan error   // server-side handshake failures
	closed  chan struct{}
	pins    chan attestation.Pin // the pin of each admitted client
}

// serveEnclave serves srv on a loopback port until the test ends.
func serveEnclave(t *testing.T, srv *securechannel.Server) *enclave {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &enclave{srv: srv, addr: ln.Addr().String(), refused: make(chan error, 16), closed: make(chan struct{}, 16), pins: make(chan attestation.Pin, 16)}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.session(raw)
			}()
		}
	}()
	return e
}

func (e *enclave) session(raw net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tc, pin, err := e.srv.Handshake(ctx, raw)
	cancel()
	if err != nil {
		e.refused <- err
		return
	}
	select {
	case e.pins <- pin:
	default:
	}
	defer func() {
		_ = tc.Close()
		select {
		case e.closed <- struct{}{}:
		default:
		}
	}()
	for {
		p, err := enclavewire.ReadFrame(tc, 0)
		if err != nil {
			return
		}
		e.frames.Add(1)
		reply, ok := answerToken(e.srv, p)
		if !ok {
			reply = echo(p)
		}
		if err := enclavewire.WriteFrame(tc, reply); err != nil {
			return
		}
	}
}

// answerToken answers an AttestationToken request as the enclave does
// (domain/enclave, through the server's CurrentToken): the reply and true,
// or false for any other request.
func answerToken(srv *securechannel.Server, p []byte) ([]byte, bool) {
	if !bytes.Equal(p, enclavewire.AttestationTokenRequest()) {
		return nil, false
	}
	tok, err := srv.CurrentToken()
	if err != nil {
		reply, _ := enclavewire.EncodeErr(enclavewire.NewError(enclavewire.MethodAttestationToken, err.Error()))
		return reply, true
	}
	reply, _ := enclavewire.EncodeAttestationTokenReply(tok)
	return reply, true
}

// echo answers a Sign request with its message, anything else with an
// error.
func echo(p []byte) []byte {
	req, err := enclavewire.DecodeRequest(p)
	var reply []byte
	switch {
	case err != nil:
		reply, _ = enclavewire.EncodeErr(enclavewire.NewError(err.Error()))
	case req.Sign == nil:
		reply, _ = enclavewire.EncodeErr(enclavewire.NewError("only Sign here"))
	default:
		reply, _ = enclavewire.EncodeOk(req.Sign.Message)
	}
	return reply
}

// wantRefused waits for the enclave to refuse a handshake and returns the
// error.
func (e *enclave) wantRefused(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e.refused:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the enclave did not refuse the connection")
		return nil
	}
}

// world is one fake Google: an issuer and a launcher, a daemon key, and a
// daemon configuration that trusts them.
type world struct {
	iss      *attestationtest.Issuer
	launcher *attestationtest.Launcher
	key      securechannel.ClientKey
	settings securechannel.ClientSettings
	dir      string
}

// newWorld makes a daemon key (written as the daemon writes it) and a
// launcher whose workload's launch environment lists its pin.
func newWorld(t testing.TB, lifetime time.Duration) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{iss: attestationtest.NewIssuer(t), dir: dir}
	var err error
	if w.key, err = securechannel.GenerateClientKey(filepath.Join(dir, "client.key")); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "issuer-ca.pem")
	if err := os.WriteFile(ca, w.iss.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w.launcher = attestationtest.NewLauncher(t, w.iss, attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: w.key.Pin.String()},
		Lifetime:    lifetime,
	})
	w.settings = securechannel.ClientSettings{
		ClientKeyFile: filepath.Join(dir, "client.key"),
		ImageDigests:  []string{attestationtest.Digest},
		Issuer:        w.iss.URL,
		IssuerCAFile:  ca,
		Leeway:        "1s",
	}
	return w
}

// client returns the daemon's client as its configuration makes it.
func (w *world) client(t *testing.T) *securechannel.Client {
	t.Helper()
	c, err := w.settings.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enclave starts an enclave that gets its tokens from the launcher and
// admits pins (the world's key if none).
func (w *world) enclave(t *testing.T, pins ...attestation.Pin) *enclave {
	t.Helper()
	if len(pins) == 0 {
		pins = []attestation.Pin{w.key.Pin}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := securechannel.OpenServer(ctx, securechannel.ServerSettings{
		LauncherSocket: w.launcher.Socket,
		ClientPins:     attestation.FormatPins(pins),
		RetryInitial:   50 * time.Millisecond,
		RetryMax:       200 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return serveEnclave(t, srv)
}

// staticTokens serves one token, whatever it is (a misbehaving enclave).
type staticTokens struct{ tok adattest.Token }

func (s staticTokens) Current() (adattest.Token, error) { return s.tok, nil }

// forgedEnclave starts an enclave that serves the token built from the
// launcher's claims for its key, edited by mutate, signed by signer.
func (w *world) forgedEnclave(t *testing.T, wl attestationtest.Workload, mutate func(jwt.MapClaims), signer attestationtest.Signer) *enclave {
	t.Helper()
	key, nonce, err := securechannel.NewEphemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	claims := w.iss.Claims(wl, securechannel.DefaultAudience, []string{nonce})
	if mutate != nil {
		mutate(claims)
	}
	iat, exp := unix(claims["iat"]), unix(claims["exp"])
	tok := adattest.Token{Raw: w.iss.Sign(claims, signer), IssuedAt: iat, Expiry: exp, Fetched: time.Now()}
	if exp.Before(time.Now()) {
		tok.Expiry = time.Now().Add(time.Hour) // the certificate's validity; the token itself says otherwise
	}
	srv, err := securechannel.NewServer(securechannel.ServerConfig{Key: key, Tokens: staticTokens{tok}, ClientPins: []attestation.Pin{w.key.Pin}})
	if err != nil {
		t.Fatal(err)
	}
	return serveEnclave(t, srv)
}

// workload returns the launcher's default workload for this world.
func (w *world) workload() attestationtest.Workload {
	return attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: w.key.Pin.String()},
	}
}

func dial(t *testing.T, c *securechannel.Client, addr string) (*securechannel.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Dial(ctx, "tcp", addr)
}

// sign sends a Sign request over conn in the enclave protocol's framing and
// returns the echoed message.
func sign(conn io.ReadWriter, msg []byte) ([]byte, error) {
	req, err := enclavewire.EncodeRequest(enclavewire.NewSign(1, msg, 2))
	if err != nil {
		return nil, err
	}
	if err := enclavewire.WriteFrame(conn, req); err != nil {
		return nil, err
	}
	p, err := enclavewire.ReadFrame(conn, 0)
	if err != nil {
		return nil, err
	}
	var out []byte
	if err := enclavewire.DecodeReply(p, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func claimOf(err error) string {
	var ce *attestation.ClaimError
	if errors.As(err, &ce) {
		return ce.Claim
	}
	return ""
}

func unix(v any) time.Time {
	switch n := v.(type) {
	case int64:
		return time.Unix(n, 0)
	case float64:
		return time.Unix(int64(n), 0)
	}
	panic(fmt.Sprintf("not a time: %T", v))
}
