package enclaveserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
)

// attestHandshake is the guard's handshake timeout in the attested tests:
// long enough for a TLS handshake with token verification on a busy
// machine, short enough to be crossed.
const attestHandshake = 2 * time.Second

// attestedEnclave is an enclave serving the attested channel, as
// sigil-enclave --attested --plain-listen wires it, with a fake launcher and
// issuer and a pinned daemon key.
type attestedEnclave struct {
	srv       *Server
	ch        *securechannel.Server
	addr      string // the attested channel
	plainAddr string // the plain listener of the same enclave
	launcher  *attestationtest.Launcher
	client    *securechannel.Client
	logs      *lockedBuf
}

func startAttested(t *testing.T, lifetime time.Duration) *attestedEnclave {
	t.Helper()
	dir := t.TempDir()
	iss := attestationtest.NewIssuer(t)
	key, err := securechannel.GenerateClientKey(filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	ca := filepath.Join(dir, "issuer-ca.pem")
	require.NoError(t, os.WriteFile(ca, iss.CAPEM(), 0o644))
	a := &attestedEnclave{logs: &lockedBuf{}}
	a.launcher = attestationtest.NewLauncher(t, iss, attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: key.Pin.String()},
		Lifetime:    lifetime,
	})
	a.client, err = securechannel.ClientSettings{
		ClientKeyFile: filepath.Join(dir, "client.key"),
		ImageDigests:  []string{attestationtest.Digest},
		Issuer:        iss.URL,
		IssuerCAFile:  ca,
	}.Client(nil)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.ch, err = securechannel.OpenServer(ctx, securechannel.ServerSettings{
		LauncherSocket: a.launcher.Socket,
		ClientPins:     key.Pin.String(),
		RetryInitial:   50 * time.Millisecond,
		RetryMax:       200 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	t.Cleanup(a.ch.Close)
	dom, err := enclave.New(enclave.Config{KMS: passthroughstandin.KMS{}, Keys: enclavewire.KeyCodec{}, Tokens: a.ch})
	require.NoError(t, err)
	a.srv, err = New(Options{Enclave: dom, HandshakeTimeout: attestHandshake, FrameTimeout: frameTO, WriteTimeout: writeTO,
		LogInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(a.logs, nil))})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a.addr, a.plainAddr = l.Addr().String(), pl.Addr().String()
	done := make(chan error, 2)
	go func() { done <- a.srv.ServeAttested(l, a.ch) }()
	go func() { done <- a.srv.Serve(pl) }()
	t.Cleanup(func() {
		a.srv.Close()
		require.ErrorIs(t, <-done, ErrServerClosed)
		require.ErrorIs(t, <-done, ErrServerClosed)
	})
	return a
}

// attestedCall is one request and its reply on an attested connection.
func attestedCall(t *testing.T, c net.Conn, req *enclavewire.Request, out any) error {
	t.Helper()
	b, err := enclavewire.EncodeRequest(req)
	require.NoError(t, err)
	require.NoError(t, enclavewire.WriteFrame(c, b))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wiretest.ReplyTimeout)))
	p, err := enclavewire.ReadFrame(c, 0)
	require.NoError(t, err)
	return enclavewire.DecodeReply(p, out)
}

// dialAttested is the daemon's dial: handshake with the token checked, then
// admitted.
func (a *attestedEnclave) dial(t *testing.T) *securechannel.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.client.Dial(ctx, "tcp", a.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.Admitted(ctx))
	return c
}

// rawTLS completes a TLS 1.3 handshake with the enclave as a client whose
// key is key, checking nothing of the enclave (a client that only wants in).
func rawTLS(t *testing.T, addr string, key securechannel.ClientKey) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{securechannel.ALPN},
		Certificates: []tls.Certificate{key.Certificate},
	})
	require.NoError(t, err) // TLS 1.3: the client is done before the server has checked its certificate
	t.Cleanup(func() { c.Close() })
	return c
}

func newClientKey(t *testing.T) securechannel.ClientKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ck, err := securechannel.NewClientKey(k)
	require.NoError(t, err)
	return ck
}

// ed25519Secret is a plain ed25519 key as ImportUnencrypted carries it.
func ed25519Secret() *enclavewire.PrivateKey {
	sk := &enclavewire.PrivateKey{Ed25519: make([]byte, 32)}
	for i := range sk.Ed25519 {
		sk.Ed25519[i] = byte(i + 1)
	}
	return sk
}

// TestAttestUnpinnedClientRefused: a client whose key is not pinned
// completes its side of TLS 1.3 but reads the enclave's alert and nothing
// else; each refusal is counted, logged with the client's pin, and the log
// is rate-limited (one line, the rest counted as suppressed); the pinned
// daemon is served meanwhile.
func TestAttestUnpinnedClientRefused(t *testing.T) {
	a := startAttested(t, 0)
	stranger := newClientKey(t)
	for i := range 3 {
		c := rawTLS(t, a.addr, stranger)
		b, err := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
		require.NoError(t, err)
		_ = enclavewire.WriteFrame(c, b)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = enclavewire.ReadFrame(c, 0)
		require.Error(t, err, "attempt %d: the enclave answered an unpinned client", i)
		require.ErrorContains(t, err, "remote error: tls:", "attempt %d", i)
	}
	require.Eventually(t, func() bool { return a.srv.Stats().HandshakesRefused == 3 }, 5*time.Second, 5*time.Millisecond)
	st := a.srv.Stats()
	require.Zero(t, st.Requests["Initialize"], "an unpinned client's request reached the enclave")
	require.Zero(t, st.HandshakeTimeouts)
	logs := a.logs.String()
	require.Equal(t, 1, strings.Count(logs, "handshake refused"), "rate-limited: %s", logs)
	require.Contains(t, logs, "client key "+stranger.Pin.String()+" is not pinned")

	c := a.dial(t)
	require.NoError(t, attestedCall(t, c, enclavewire.NewInitialize(creds), nil))
	require.Equal(t, int64(3), a.srv.Stats().HandshakesRefused)
}

// TestAttestPlainClientOnTLSPort: a client of the plain protocol that
// connects to the attested port gets its connection closed at once (no
// reply frame, no hang until a timeout); the refusal is counted, not as a
// timeout; the enclave keeps serving.
func TestAttestPlainClientOnTLSPort(t *testing.T) {
	a := startAttested(t, 0)
	c := dialRaw(t, a.addr)
	b, err := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
	require.NoError(t, err)
	require.NoError(t, enclavewire.WriteFrame(c, b))
	start := time.Now()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(attestHandshake/2)))
	got, err := io.ReadAll(c)
	require.False(t, isTimeout(err), "the enclave kept the plain client's connection open")
	require.Less(t, time.Since(start), attestHandshake/2)
	_, derr := enclavewire.ReadFrame(strings.NewReader(string(got)), 0)
	if derr == nil {
		require.Fail(t, "the plain client read a frame", "%x", got)
	}
	require.Eventually(t, func() bool { return a.srv.Stats().HandshakesRefused == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, a.srv.Stats().HandshakeTimeouts)
	require.Zero(t, a.srv.Stats().Requests["Initialize"])
	require.NoError(t, attestedCall(t, a.dial(t), enclavewire.NewInitialize(creds), nil))
}

// TestAttestHandshakeTimeout: time is an input. A connection that sends
// nothing, one that stalls in the middle of its ClientHello, and a pinned
// client that completes TLS but sends no Initialize are each still open
// just before the guard's handshake timeout and closed once it passes,
// counted as handshake timeouts (not refusals); an initialized attested
// session idle for longer than every guard timeout is still served.
func TestAttestHandshakeTimeout(t *testing.T) {
	a := startAttested(t, 0)
	idle := a.dial(t)
	require.NoError(t, attestedCall(t, idle, enclavewire.NewInitialize(creds), nil))

	start := time.Now()
	silent := dialRaw(t, a.addr)
	partial := dialRaw(t, a.addr)
	// A TLS record header announcing a 512-byte handshake record, and 10
	// of its bytes.
	_, err := partial.Write(append([]byte{0x16, 0x03, 0x01, 0x02, 0x00}, make([]byte, 10)...))
	require.NoError(t, err)
	quiet := a.dial(t) // TLS done, no Initialize

	// Before the timeout: all open (a read waits for our own deadline).
	for name, c := range map[string]net.Conn{"silent": silent, "partial": partial, "quiet": quiet} {
		require.NoError(t, c.SetReadDeadline(start.Add(attestHandshake/2)))
		_, err := c.Read(make([]byte, 1))
		require.True(t, isTimeout(err), "%s closed before the handshake timeout: %v", name, err)
		require.NoError(t, c.SetReadDeadline(time.Time{}))
	}
	require.Zero(t, a.srv.Stats().HandshakeTimeouts)
	// After it: all closed.
	for name, c := range map[string]net.Conn{"silent": silent, "partial": partial, "quiet": quiet} {
		require.NoError(t, c.SetReadDeadline(start.Add(3*attestHandshake)))
		_, err := io.ReadAll(c)
		require.False(t, isTimeout(err), "%s still open after the handshake timeout", name)
	}
	require.GreaterOrEqual(t, time.Since(start), attestHandshake)
	require.Eventually(t, func() bool { return a.srv.Stats().HandshakeTimeouts == 3 }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, a.srv.Stats().HandshakesRefused)
	require.Contains(t, a.logs.String(), "sent no Initialize within "+attestHandshake.String())
	require.Contains(t, a.logs.String(), "did not complete the attested channel's TLS handshake within "+attestHandshake.String())

	// The initialized session idled through all of it (longer than the
	// handshake, frame and write timeouts) and is served.
	require.Greater(t, time.Since(start), max(attestHandshake, frameTO, writeTO))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, attestedCall(t, idle, enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
}

// TestAttestTokenOnPlainConnection: AttestationToken is answered on the
// attested channel only (the enclave's current token); on the plain
// listener of the same enclave, and on a plain enclave, the answer is the
// domain's ErrPlainChannel.
func TestAttestTokenOnPlainConnection(t *testing.T) {
	a := startAttested(t, 0)
	var tok enclavewire.AttestationTokenResult
	require.NoError(t, attestedCall(t, a.dial(t), enclavewire.NewAttestationToken(), &tok))
	cur, err := a.ch.CurrentToken()
	require.NoError(t, err)
	require.Equal(t, cur, tok.Token)

	_, plainEnclave := start(t, Options{})
	for _, addr := range []string{a.plainAddr, plainEnclave} {
		c := wiretest.Dial(t, addr)
		require.EqualError(t, c.Call(enclavewire.NewAttestationToken(), &tok), enclave.ErrPlainChannel.Error(), addr)
		require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
		require.EqualError(t, c.Call(enclavewire.NewAttestationToken(), &tok), enclave.ErrPlainChannel.Error(), addr)
	}
	// Admitted's, the call's, and the two on the plain listener.
	require.Equal(t, int64(4), a.srv.Stats().Requests["AttestationToken"])
}

// TestAttestImportUnencryptedRefusedOnPlainListener: on the plain listener
// of an enclave that serves the attested channel, ImportUnencrypted is
// refused with the domain's ErrPlainImport: nothing is sealed (no KMS
// call), nothing loaded. The same request over the attested channel, and
// on a plain enclave (byte-compatible with enclave-signer), succeeds.
func TestAttestImportUnencryptedRefusedOnPlainListener(t *testing.T) {
	a := startAttested(t, 0)
	plain := wiretest.Dial(t, a.plainAddr)
	require.NoError(t, plain.Call(enclavewire.NewInitialize(creds), nil))
	var res enclavewire.GenerateAndImportResult
	require.EqualError(t, plain.Call(enclavewire.NewImportUnencrypted(ed25519Secret()), &res), enclave.ErrPlainImport.Error())
	require.Zero(t, a.srv.Stats().KMSCalls, "the refused key was sealed")
	for _, s := range a.srv.Sessions() {
		require.Empty(t, s.Keys, "the refused key was loaded")
	}

	c := a.dial(t)
	require.NoError(t, attestedCall(t, c, enclavewire.NewInitialize(creds), nil))
	require.NoError(t, attestedCall(t, c, enclavewire.NewImportUnencrypted(ed25519Secret()), &res))
	require.NotEmpty(t, res.EncryptedPrivateKey)
	require.Equal(t, int64(1), a.srv.Stats().KMSCalls)

	_, plainEnclave := start(t, Options{})
	p := wiretest.Dial(t, plainEnclave)
	require.NoError(t, p.Call(enclavewire.NewInitialize(creds), nil))
	require.NoError(t, p.Call(enclavewire.NewImportUnencrypted(ed25519Secret()), &res))
}

// TestAttestServesAfterRenewal: with 2-second tokens the enclave renews
// every second; after the launcher's workload changes (Update), new
// handshakes carry the new token, a connection made before keeps its
// session and key handles past the expiry of the token it was made with,
// extended in band with the renewed token.
func TestAttestServesAfterRenewal(t *testing.T) {
	a := startAttested(t, 2*time.Second)
	old := a.dial(t)
	require.NoError(t, attestedCall(t, old, enclavewire.NewInitialize(creds), nil))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, attestedCall(t, old, enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
	firstExpiry := old.ValidUntil()

	const renewed = "us-west1-docker.pkg.dev/test-project/sigil/sigil-enclave:renewed"
	a.launcher.Update(func(w *attestationtest.Workload) { w.ImageReference = renewed })
	require.Eventually(t, func() bool {
		c, err := a.client.Dial(context.Background(), "tcp", a.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		return c.Claims().ImageReference == renewed
	}, 10*time.Second, 100*time.Millisecond, "no handshake saw the renewed token")

	// The old connection, refreshed in band, outlives its first token.
	require.NoError(t, old.Refresh(context.Background()))
	require.Equal(t, renewed, old.Claims().ImageReference)
	require.True(t, old.ValidUntil().After(firstExpiry))
	time.Sleep(time.Until(firstExpiry) + 100*time.Millisecond)
	if old.RefreshDue() {
		require.NoError(t, old.Refresh(context.Background()))
	}
	var sig enclavewire.Tagged
	require.NoError(t, attestedCall(t, old, enclavewire.NewSign(gi.Handle, []byte("\x03op"), 2), &sig))
	require.GreaterOrEqual(t, a.launcher.Issued(), 2)
	require.True(t, time.Now().After(firstExpiry), "the old connection was not used past its first token")
	require.Zero(t, a.srv.Stats().HandshakesRefused)
}
