// Package attested tests the attested channel between processes: the real
// sigil-enclave binary, built from this checkout, started with --attested
// and --launcher-socket pointing at a fake Confidential Space launcher
// (adapters/attestation/attestationtest, tokens signed by a fake issuer
// with Google's claims), and the daemon's side of the channel
// (adapters/securechannel's client) in the test: refused enclaves (another
// image digest, a debug image, an expired token, a token bound to another
// TLS key shown by a man in the middle, whom the enclave refuses too), an
// unpinned client refused by the enclave, and a long-lived connection
// refreshed in band while its tokens expire one after another. Signatures
// are verified with crypto/ed25519 and blake2b, not the enclave's code.
package attested

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/blake2b"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// otherDigest is an image digest the daemon does not allow.
const otherDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

var creds = enclavewire.Credentials{WIPProviderPath: "projects/1/locations/global/workloadIdentityPools/p/providers/q",
	EncryptionKeyPath: "projects/p/locations/global/keyRings/r/cryptoKeys/k"}

// world is a fake Google (issuer) and a daemon key, written as `sigil
// enclave-client-key` writes it.
type world struct {
	iss     *attestationtest.Issuer
	key     securechannel.ClientKey
	keyFile string
	caFile  string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	harness.SkipIfShort(t)
	dir := t.TempDir()
	w := &world{iss: attestationtest.NewIssuer(t), keyFile: filepath.Join(dir, "client.key"), caFile: filepath.Join(dir, "issuer-ca.pem")}
	var err error
	w.key, err = securechannel.GenerateClientKey(w.keyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(w.caFile, w.iss.CAPEM(), 0o644))
	return w
}

// workload is the production workload whose launch environment pins the
// daemon's key.
func (w *world) workload() attestationtest.Workload {
	return attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: w.key.Pin.String()},
	}
}

// enclave starts sigil-enclave --attested with the fake launcher attesting
// wl; its launch environment lists pins (the daemon's if empty).
func (w *world) enclave(t *testing.T, wl attestationtest.Workload, pins string) (*harness.Enclave, *attestationtest.Launcher) {
	t.Helper()
	if pins == "" {
		pins = w.key.Pin.String()
	}
	l := attestationtest.NewLauncher(t, w.iss, wl)
	e := harness.StartEnclave(t, harness.EnclaveOptions{
		Args: []string{"--kms", "passthrough", "--attested", "--launcher-socket", l.Socket, "--attest-start-timeout", "20s", "--log-level", "debug"},
		Env:  []string{attestation.DefaultClientPinsEnv + "=" + pins},
	})
	return e, l
}

// settings is the daemon's attested_channel section for this world.
func (w *world) settings() securechannel.ClientSettings {
	return securechannel.ClientSettings{
		ClientKeyFile: w.keyFile,
		ImageDigests:  []string{attestationtest.Digest},
		Issuer:        w.iss.URL,
		IssuerCAFile:  w.caFile,
	}
}

// client is the daemon's client as its configuration makes it.
func (w *world) client(t *testing.T) *securechannel.Client {
	t.Helper()
	c, err := w.settings().Client(nil)
	require.NoError(t, err)
	return c
}

// clientAt is the daemon's client with its clock at now() + skew.
func (w *world) clientAt(t *testing.T, skew time.Duration) *securechannel.Client {
	t.Helper()
	s := w.settings()
	v, err := adattest.NewVerifier(adattest.VerifierConfig{
		Expectations: attestation.Expectations{
			Issuer: w.iss.URL, Audience: securechannel.DefaultAudience, ImageDigests: s.ImageDigests,
			ClientPinsEnv: attestation.DefaultClientPinsEnv, ClientPin: w.key.Pin, Leeway: securechannel.DefaultLeeway,
		},
		HTTPClient: w.iss.Client,
		Now:        func() time.Time { return time.Now().Add(skew) },
	})
	require.NoError(t, err)
	c, err := securechannel.NewClient(securechannel.ClientConfig{Key: w.key, Verifier: v})
	require.NoError(t, err)
	return c
}

func dial(t *testing.T, c *securechannel.Client, addr string) (*securechannel.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Admitted(ctx); err != nil {
		return nil, err
	}
	return conn, nil
}

// call is one request and its reply.
func call(t *testing.T, c net.Conn, req *enclavewire.Request, out any) error {
	t.Helper()
	b, err := enclavewire.EncodeRequest(req)
	require.NoError(t, err)
	require.NoError(t, enclavewire.WriteFrame(c, b))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	p, err := enclavewire.ReadFrame(c, 0)
	require.NoError(t, err)
	return enclavewire.DecodeReply(p, out)
}

// signAndVerify initializes the session if asked, makes an ed25519 key
// (once, returned) and signs msg with it; the signature is checked with
// crypto/ed25519 over blake2b-256(msg), as Tezos defines it.
type signer struct {
	pub    ed25519.PublicKey
	handle uint64
}

func newSigner(t *testing.T, c net.Conn) *signer {
	t.Helper()
	require.NoError(t, call(t, c, enclavewire.NewInitialize(creds), nil))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, call(t, c, enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
	require.Equal(t, enclavewire.KeyEd25519, gi.PublicKey.Type)
	require.Len(t, gi.PublicKey.Bytes, ed25519.PublicKeySize)
	return &signer{pub: ed25519.PublicKey(gi.PublicKey.Bytes), handle: gi.Handle}
}

func (s *signer) sign(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	var sig enclavewire.Tagged
	require.NoError(t, call(t, c, enclavewire.NewSign(s.handle, msg, 2), &sig))
	d := blake2b.Sum256(msg)
	require.True(t, ed25519.Verify(s.pub, d[:], sig.Bytes), "the enclave's signature does not verify")
}

func claimOf(err error) string {
	var ce *attestation.ClaimError
	if errors.As(err, &ce) {
		return ce.Claim
	}
	return ""
}

// TestAttestProcessRefusedEnclaves: the daemon's side refuses, naming the
// claim, an enclave process whose token says another image digest, a debug
// image, or has expired (by the daemon's clock: two hours ahead of
// one-hour tokens); the enclave sees the handshake aborted and no request.
// The same daemon signs with the right enclave, and the signature verifies.
func TestAttestProcessRefusedEnclaves(t *testing.T) {
	w := newWorld(t)
	good := w.workload()
	wrongDigest := w.workload()
	wrongDigest.ImageDigest = otherDigest
	debug := w.workload()
	debug.Debug = true
	for _, c := range []struct {
		name   string
		wl     attestationtest.Workload
		client func(*testing.T) *securechannel.Client
		claim  string
		says   string
	}{
		{"wrong image digest", wrongDigest, w.client, attestation.ClaimImageDigest, otherDigest},
		{"debug image", debug, w.client, attestation.ClaimDebugStatus, "enabled"},
		{"expired token", good, func(t *testing.T) *securechannel.Client { return w.clientAt(t, 2*time.Hour) }, attestation.ClaimExpiry, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := w.enclave(t, c.wl, "")
			_, err := dial(t, c.client(t), e.Addr())
			require.Error(t, err)
			require.Equal(t, c.claim, claimOf(err), "%v", err)
			require.Contains(t, err.Error(), c.says)
			require.Eventually(t, func() bool { return strings.Contains(e.Log(), "handshake refused by the client") }, 10*time.Second, 20*time.Millisecond)
			require.NotContains(t, e.Log(), "attested channel up")
			require.NotContains(t, e.Log(), "method=")
		})
	}
	t.Run("all right", func(t *testing.T) {
		e, _ := w.enclave(t, good, "")
		conn, err := dial(t, w.client(t), e.Addr())
		require.NoError(t, err)
		require.Equal(t, attestationtest.Digest, conn.Claims().ImageDigest)
		s := newSigner(t, conn)
		s.sign(t, conn, []byte("\x03attested operation"))
	})
}

// TestAttestProcessUnpinnedClient: the enclave process refuses a daemon
// whose key its launch environment does not list, logging that key's pin
// (ErrNotAdmitted on the daemon's side, naming its pin, for a daemon that
// does not check its own pin in the token); a daemon that does check it
// refuses first, the claim naming the environment variable.
func TestAttestProcessUnpinnedClient(t *testing.T) {
	w := newWorld(t)
	otherKey, err := securechannel.GenerateClientKey(filepath.Join(t.TempDir(), "other.key"))
	require.NoError(t, err)
	wl := w.workload()
	wl.Env = map[string]string{attestation.DefaultClientPinsEnv: otherKey.Pin.String()}
	e, _ := w.enclave(t, wl, otherKey.Pin.String())

	v, err := adattest.NewVerifier(adattest.VerifierConfig{
		Expectations: attestation.Expectations{Issuer: w.iss.URL, Audience: securechannel.DefaultAudience,
			ImageDigests: []string{attestationtest.Digest}, Leeway: securechannel.DefaultLeeway},
		HTTPClient: w.iss.Client,
	})
	require.NoError(t, err)
	blind, err := securechannel.NewClient(securechannel.ClientConfig{Key: w.key, Verifier: v})
	require.NoError(t, err)
	_, err = dial(t, blind, e.Addr())
	require.ErrorIs(t, err, securechannel.ErrNotAdmitted)
	require.Contains(t, err.Error(), w.key.Pin.String())
	require.Eventually(t, func() bool {
		return strings.Contains(e.Log(), "client key "+w.key.Pin.String()+" is not pinned")
	}, 10*time.Second, 20*time.Millisecond, "the enclave did not log the refused pin")

	// (The enclave's log of this second refusal is rate-limited.)
	_, err = dial(t, w.client(t), e.Addr())
	require.Equal(t, attestation.ClaimEnv+"."+attestation.DefaultClientPinsEnv, claimOf(err), "%v", err)
	require.Contains(t, err.Error(), w.key.Pin.String()+" (this daemon's key)")
}

// proxy is a man in the middle with its own TLS key: for each daemon
// connection it connects to the enclave as a TLS client (with its own key,
// which no launch environment lists), takes the enclave's token from its
// certificate, and shows the daemon a certificate for its own key carrying
// that genuine token.
type proxy struct {
	addr        string
	pin         attestation.Pin
	enclaveErrs chan error // what the enclave answered the proxy
	daemonErrs  chan error // the proxy's handshake with the daemon
}

func startProxy(t *testing.T, enclaveAddr string) *proxy {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ck, err := securechannel.NewClientKey(key)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	p := &proxy{addr: ln.Addr().String(), pin: ck.Pin, enclaveErrs: make(chan error, 4), daemonErrs: make(chan error, 4)}
	go func() {
		for {
			dc, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(t, dc, enclaveAddr, key, ck)
		}
	}()
	return p
}

func (p *proxy) relay(t *testing.T, dc net.Conn, enclaveAddr string, key *ecdsa.PrivateKey, ck securechannel.ClientKey) {
	defer dc.Close()
	ec, err := tls.Dial("tcp", enclaveAddr, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		NextProtos: []string{securechannel.ALPN}, Certificates: []tls.Certificate{ck.Certificate}})
	if err != nil {
		p.enclaveErrs <- err
		return
	}
	defer ec.Close()
	tok, err := securechannel.TokenFromCertificate(ec.ConnectionState().PeerCertificates[0])
	if err != nil {
		p.enclaveErrs <- err
		return
	}
	// The enclave's verdict on the proxy's key: the alert arrives at the
	// first read.
	go func() {
		b, _ := enclavewire.EncodeRequest(enclavewire.NewInitialize(creds))
		_ = enclavewire.WriteFrame(ec, b)
		_ = ec.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := enclavewire.ReadFrame(ec, 0)
		p.enclaveErrs <- err
	}()
	val, _ := asn1.MarshalWithParams(tok, "utf8")
	tpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "sigil enclave"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: securechannel.TokenOID, Value: val}}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		p.daemonErrs <- err
		return
	}
	sc := tls.Server(dc, &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{securechannel.ALPN},
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, ClientAuth: tls.RequireAnyClientCert})
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	p.daemonErrs <- sc.Handshake()
}

// TestAttestProcessManInTheMiddle: a proxy with its own certificate,
// carrying the enclave's genuine token, in front of the enclave process is
// refused by both ends: the daemon refuses the token's binding (eat_nonce:
// the token is bound to another key) without presenting its certificate,
// and the enclave refuses the proxy's key as unpinned and logs its pin.
func TestAttestProcessManInTheMiddle(t *testing.T) {
	w := newWorld(t)
	e, _ := w.enclave(t, w.workload(), "")
	p := startProxy(t, e.Addr())

	_, err := dial(t, w.client(t), p.addr)
	require.Equal(t, attestation.ClaimNonce, claimOf(err), "%v", err)
	require.Contains(t, err.Error(), "bound to another key")

	select {
	case err := <-p.daemonErrs:
		require.Error(t, err, "the daemon completed a handshake with the proxy")
	case <-time.After(20 * time.Second):
		t.Fatal("the proxy's handshake with the daemon did not end")
	}
	select {
	case err := <-p.enclaveErrs:
		require.Error(t, err, "the enclave answered the proxy")
		require.ErrorContains(t, err, "remote error: tls:")
	case <-time.After(20 * time.Second):
		t.Fatal("the enclave did not answer the proxy")
	}
	require.Eventually(t, func() bool {
		return strings.Contains(e.Log(), "client key "+p.pin.String()+" is not pinned")
	}, 10*time.Second, 20*time.Millisecond, "the enclave did not log the proxy's pin")

	// Directly, the same daemon is served.
	conn, err := dial(t, w.client(t), e.Addr())
	require.NoError(t, err)
	newSigner(t, conn).sign(t, conn, []byte("\x03after the proxy"))
}

// TestAttestProcessRefreshInBand: with 6-second tokens, one connection to
// the enclave process kept for two token lifetimes, a signed request every
// 100 ms with RefreshIfDue before each as the daemon does, stays open and
// keeps its key handle; it is refreshed in band at least twice, and its
// validity moves forward past the expiry of its first token. (The fake
// launcher's iat is whole seconds, so a token may arrive up to 1 s into its
// life: the enclave renews it at most 1 s + half its lifetime after its
// iat, which must come before the daemon's refresh at three quarters;
// 6 seconds leave half a second, Google's one hour leaves 15 minutes.)
func TestAttestProcessRefreshInBand(t *testing.T) {
	w := newWorld(t)
	wl := w.workload()
	wl.Lifetime = 6 * time.Second
	e, l := w.enclave(t, wl, "")
	conn, err := dial(t, w.client(t), e.Addr())
	require.NoError(t, err)
	s := newSigner(t, conn)
	first := conn.ValidUntil()
	seen := map[time.Time]bool{conn.Claims().IssuedAt: true}
	end := first.Add(wl.Lifetime)
	for i := 0; time.Now().Before(end); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, conn.RefreshIfDue(ctx), "request %d", i)
		cancel()
		seen[conn.Claims().IssuedAt] = true
		s.sign(t, conn, []byte{0x03, byte(i)})
		time.Sleep(100 * time.Millisecond)
	}
	require.True(t, time.Now().After(first), "the connection did not outlive its first token")
	require.True(t, conn.ValidUntil().After(time.Now()))
	require.GreaterOrEqual(t, len(seen), 3, "the connection was not refreshed in band more than once")
	require.GreaterOrEqual(t, l.Issued(), 3)
	require.NotContains(t, e.Log(), "handshake refused")
}

// TestAttestProcessStartRefused: sigil-enclave --attested does not start
// (exit status 1, the cause on stderr) without a client pin, with a
// malformed pin list, or when the launcher gives no token within
// --attest-start-timeout (its last answer named).
func TestAttestProcessStartRefused(t *testing.T) {
	w := newWorld(t)
	l := attestationtest.NewLauncher(t, w.iss, w.workload())
	l.SetFailing(true)
	bin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	for _, c := range []struct {
		pins string
		want []string
	}{
		{"", []string{"SIGIL_ENCLAVE_CLIENT_PINS lists no client pin"}},
		{"sha256:00", []string{"SIGIL_ENCLAVE_CLIENT_PINS"}},
		{w.key.Pin.String(), []string{"no attestation token from the launcher at " + l.Socket + " within 1s", "503"}},
	} {
		p, err := harness.TryStartProcess(t, harness.ProcessOptions{
			Binary: bin,
			Args: []string{"--listen", "127.0.0.1:0", "--kms", "passthrough", "--attested", "--launcher-socket", l.Socket,
				"--attest-start-timeout", "1s"},
			Env:     []string{attestation.DefaultClientPinsEnv + "=" + c.pins},
			Ready:   func(line string) bool { return strings.HasPrefix(line, "listening on") },
			Timeout: 30 * time.Second,
		})
		require.Error(t, err, "pins %q: started", c.pins)
		require.NotNil(t, p)
		require.Error(t, p.Wait())
		for _, s := range c.want {
			require.Contains(t, p.Log(), s, "pins %q", c.pins)
		}
		require.NotContains(t, p.Log(), "listening on")
	}
}
