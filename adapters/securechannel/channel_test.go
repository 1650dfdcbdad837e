package securechannel_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// TestAttestChannelCarriesFrames: a pinned daemon and an attested enclave
// talk the enclave protocol over the channel.
func TestAttestChannelCarriesFrames(t *testing.T) {
	w := newWorld(t, 0)
	e := w.enclave(t)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := conn.Claims()
	if c.ImageDigest != attestationtest.Digest || c.DebugStatus != attestation.DebugDisabledSinceBoot {
		t.Fatalf("claims %+v", c)
	}
	cs := conn.ConnectionState()
	if cs.Version != tls.VersionTLS13 || cs.DidResume {
		t.Fatalf("TLS version %x, resumed %v", cs.Version, cs.DidResume)
	}
	for i := range 50 {
		msg := bytes.Repeat([]byte{byte(i)}, 100+i)
		got, err := sign(conn, msg)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("request %d: %x, %v", i, got, err)
		}
	}
	if got := <-e.pins; got != w.key.Pin {
		t.Fatalf("the enclave saw pin %s, want %s", got, w.key.Pin)
	}
	if n := e.frames.Load(); n != 50 {
		t.Fatalf("the enclave received %d frames", n)
	}
}

// TestAttestClientRefusesEnclave: every kind of wrong enclave is refused
// during the handshake with an error naming the claim (or the key), and
// the enclave never receives an application byte.
func TestAttestClientRefusesEnclave(t *testing.T) {
	w := newWorld(t, 0)
	client := w.client(t)
	other := attestationtest.Digest[:len(attestationtest.Digest)-4] + "beef"
	for _, tc := range []struct {
		name   string
		wl     func(*attestationtest.Workload)
		mutate func(jwt.MapClaims)
		signer attestationtest.Signer
		claim  string // or, for signature failures, text in the error
		text   string
	}{
		{name: "another image digest", wl: func(wl *attestationtest.Workload) { wl.ImageDigest = other }, claim: attestation.ClaimImageDigest, text: other},
		{name: "debug image", wl: func(wl *attestationtest.Workload) { wl.Debug = true }, claim: attestation.ClaimDebugStatus, text: `"enabled"`},
		{name: "not STABLE", wl: func(wl *attestationtest.Workload) { wl.SupportAttributes = []string{"USABLE"} }, claim: attestation.ClaimSupportAttributes},
		{name: "expired token", mutate: func(c jwt.MapClaims) {
			c["iat"], c["nbf"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
		}, claim: attestation.ClaimExpiry, text: "expired"},
		{name: "wrong audience", mutate: func(c jwt.MapClaims) { c["aud"] = "https://sts.googleapis.com" }, claim: attestation.ClaimAudience},
		{name: "wrong issuer", mutate: func(c jwt.MapClaims) { c["iss"] = attestation.DefaultIssuer }, claim: attestation.ClaimIssuer},
		{name: "bound to another key", mutate: func(c jwt.MapClaims) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			n, _ := securechannel.KeyNonce(k.Public())
			c["eat_nonce"] = n
		}, claim: attestation.ClaimNonce, text: "another key"},
		{name: "daemon not in the pin list", wl: func(wl *attestationtest.Workload) {
			wl.Env = map[string]string{attestation.DefaultClientPinsEnv: attestation.PinOf([]byte("x")).String()}
		}, claim: attestation.ClaimEnv + "." + attestation.DefaultClientPinsEnv},
		{name: "signed by an unknown key", signer: attestationtest.SignUnknownKey, text: `kid "unknown-key"`},
		{name: "signed by other key material", signer: attestationtest.SignImpostor, text: "signature"},
		{name: "PKI token to an OIDC daemon", signer: attestationtest.SignPKI, text: "x5c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wl := w.workload()
			if tc.wl != nil {
				tc.wl(&wl)
			}
			e := w.forgedEnclave(t, wl, tc.mutate, tc.signer)
			conn, err := dial(t, client, e.addr)
			if err == nil {
				conn.Close()
				t.Fatal("connected")
			}
			t.Log(err)
			if tc.claim != "" && claimOf(err) != tc.claim {
				t.Errorf("refused with %v, want claim %s", err, tc.claim)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			// The enclave saw the client abort the handshake.
			if serr := e.wantRefused(t); !strings.Contains(serr.Error(), "bad certificate") {
				t.Errorf("enclave side: %v", serr)
			}
			if n := e.frames.Load(); n != 0 {
				t.Errorf("the enclave received %d frames", n)
			}
		})
	}
}

// TestAttestEnclaveRefusesUnpinnedClient: a client whose key the enclave's
// launch configuration does not list gets no session, even one that skips
// its own pin check.
func TestAttestEnclaveRefusesUnpinnedClient(t *testing.T) {
	w := newWorld(t, 0)
	e := w.enclave(t)

	// A daemon with another key, configured like the real one: it sees
	// from the token that the enclave will not admit it.
	s := w.settings
	s.ClientKeyFile = w.dir + "/other.key"
	if _, err := securechannel.GenerateClientKey(s.ClientKeyFile); err != nil {
		t.Fatal(err)
	}
	other, err := s.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, other, e.addr)
	if claimOf(err) != attestation.ClaimEnv+"."+attestation.DefaultClientPinsEnv || !strings.Contains(err.Error(), other.Pin().String()) {
		t.Fatalf("Dial = %v", err)
	}
	e.wantRefused(t)

	// A client that does not check the pin list: the enclave refuses it.
	v, err := s.Verifier(other.Pin())
	if err != nil {
		t.Fatal(err)
	}
	noPinCheck := pinless{v}
	key, _ := securechannel.LoadClientKey(s.ClientKeyFile)
	rogue, err := securechannel.NewClient(securechannel.ClientConfig{Key: key, Verifier: noPinCheck})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dial(t, rogue, e.addr)
	if err == nil {
		// TLS 1.3: the client finishes before the server checks its
		// certificate; the refusal arrives on the first read.
		_, err = sign(conn, []byte("sign me"))
		conn.Close()
	}
	if err == nil {
		t.Fatal("an unpinned client got a reply")
	}
	serr := e.wantRefused(t)
	if !strings.Contains(serr.Error(), "not pinned") || !strings.Contains(serr.Error(), other.Pin().String()) {
		t.Fatalf("enclave side: %v", serr)
	}
	if n := e.frames.Load(); n != 0 {
		t.Fatalf("the enclave received %d frames", n)
	}

	// A client without a certificate at all.
	raw, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err == nil {
		_, _ = raw.Write([]byte{0, 0, 0, 1, 0xa0})
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
	}
	if err == nil {
		t.Fatal("a client without certificate got a reply")
	}
	if serr := e.wantRefused(t); !strings.Contains(serr.Error(), "certificate") {
		t.Fatalf("enclave side: %v", serr)
	}
	// TLS 1.2 is refused.
	if _, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{w.key.Certificate}}); err == nil {
		t.Fatal("TLS 1.2 accepted")
	}
	e.wantRefused(t)
}

// pinless verifies tokens but ignores the pin list (a rogue client).
type pinless struct{ v *adattest.Verifier }

func (p pinless) Verify(ctx context.Context, tok, nonce string) (attestation.Claims, error) {
	c, err := p.v.Verify(ctx, tok, nonce)
	if claimOf(err) == attestation.ClaimEnv+"."+attestation.DefaultClientPinsEnv {
		err = nil
	}
	return c, err
}

// TestAttestManInTheMiddle: a proxy that terminates TLS is refused by both
// ends, whatever certificate it shows the daemon; a proxy that relays bytes
// without terminating TLS changes nothing.
func TestAttestManInTheMiddle(t *testing.T) {
	w := newWorld(t, 0)
	e := w.enclave(t)
	client := w.client(t)

	// What any client learns from the enclave: its certificate, token
	// included (TLS 1.3 sends it before asking for the client's).
	var genuine *tls.Certificate
	probe, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			genuine = &tls.Certificate{Certificate: [][]byte{cs.PeerCertificates[0].Raw}, Leaf: cs.PeerCertificates[0]}
			return nil
		}})
	if err == nil {
		probe.Close()
	}
	if genuine == nil {
		t.Fatal("no certificate from the enclave")
	}
	e.wantRefused(t)
	token := tokenOf(t, genuine.Leaf)

	mitmKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mitmIdentity, err := securechannel.NewClientKey(mitmKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate // what the proxy shows the daemon
		want string
	}{
		{"own certificate", selfSigned(t, mitmKey, ""), "carries no attestation token"},
		{"genuine token in its own certificate", selfSigned(t, mitmKey, token), "eat_nonce"},
		{"the enclave's certificate without its key", tls.Certificate{Certificate: genuine.Certificate, PrivateKey: mitmKey}, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, e.addr, &tc.cert, mitmIdentity.Certificate)
			_, err := dial(t, client, p.addr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("daemon: Dial = %v, want %q", err, tc.want)
			}
			t.Log(err)
			// The proxy's own connection to the enclave is refused.
			if perr := <-p.upstream; perr == nil {
				t.Fatal("the enclave let the proxy in")
			}
			if serr := e.wantRefused(t); !strings.Contains(serr.Error(), "not pinned") {
				t.Fatalf("enclave side: %v", serr)
			}
		})
	}
	if n := e.frames.Load(); n != 0 {
		t.Fatalf("the enclave received %d frames", n)
	}

	// A byte relay (a NAT, a TCP load balancer) is not a man in the middle.
	relay := startRelay(t, e.addr)
	conn, err := dial(t, client, relay)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, err := sign(conn, []byte("through the relay")); err != nil || string(got) != "through the relay" {
		t.Fatalf("%q, %v", got, err)
	}
}

func tokenOf(t *testing.T, leaf *x509.Certificate) string {
	t.Helper()
	tok, err := securechannel.TokenFromCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// selfSigned returns a certificate for key carrying token (none if "").
func selfSigned(t *testing.T, key *ecdsa.PrivateKey, token string) tls.Certificate {
	t.Helper()
	tpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "sigil enclave"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if token != "" {
		v, err := asn1.MarshalWithParams(token, "utf8")
		if err != nil {
			t.Fatal(err)
		}
		tpl.ExtraExtensions = []pkix.Extension{{Id: securechannel.TokenOID, Value: v}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type proxy struct {
	addr     string
	upstream chan error // the outcome of the proxy's own session with the enclave
}

// startProxy is a man in the middle: it terminates the daemon's TLS with
// cert and opens its own TLS session to the enclave with identity.
func startProxy(t *testing.T, enclave string, cert *tls.Certificate, identity tls.Certificate) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	p := &proxy{addr: ln.Addr().String(), upstream: make(chan error, 1)}
	go func() {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		defer down.Close()
		up, err := tls.Dial("tcp", enclave, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{identity}})
		if err == nil {
			_, err = sign(up, []byte("relayed"))
			up.Close()
		}
		p.upstream <- err
		srv := tls.Server(down, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{securechannel.ALPN}})
		_ = srv.Handshake()
		_, _ = io.Copy(io.Discard, srv)
	}()
	return p
}

// startRelay forwards bytes between the daemon and the enclave.
func startRelay(t *testing.T, enclave string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", enclave)
			if err != nil {
				down.Close()
				continue
			}
			go func() { _, _ = io.Copy(up, down); up.Close() }()
			go func() { _, _ = io.Copy(down, up); down.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestAttestPlainEnclave: a daemon configured for the attested channel
// that reaches an enclave serving the plain protocol gets an error saying
// so, and the plain enclave never decodes the TLS bytes as a request.
func TestAttestPlainEnclave(t *testing.T) {
	w := newWorld(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, err = enclavewire.ReadFrame(c, 0) // as the plain enclave reads
		got <- err
	}()
	_, err = dial(t, w.client(t), ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "is it serving the attested channel") {
		t.Fatalf("Dial = %v", err)
	}
	if ferr := <-got; !errors.Is(ferr, enclavewire.ErrFrameTooLarge) {
		t.Fatalf("the plain enclave read %v", ferr)
	}
}

// TestAttestALPN: a client that offers another application protocol is
// refused by the enclave.
func TestAttestALPN(t *testing.T) {
	w := newWorld(t, 0)
	e := w.enclave(t)
	_, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"}, Certificates: []tls.Certificate{w.key.Certificate}})
	if err == nil {
		t.Fatal("ALPN h2 accepted")
	}
	if serr := e.wantRefused(t); !strings.Contains(serr.Error(), "application protocol") {
		t.Fatalf("enclave side: %v", serr)
	}
}

// TestAttestHandshakeTimeouts: a peer that never speaks costs each side no
// more than its context allows.
func TestAttestHandshakeTimeouts(t *testing.T) {
	w := newWorld(t, 0)
	e := w.enclave(t)
	// The enclave's side: a client that connects and says nothing.
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := e.srv.Handshake(ctx, a); err == nil {
		t.Fatal("handshake with a silent client succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the server waited %v", d)
	}
	// The daemon's side: an enclave that accepts and says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if _, err := w.client(t).Dial(ctx2, "tcp", ln.Addr().String()); err == nil {
		t.Fatal("handshake with a silent enclave succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the client waited %v", d)
	}
}
