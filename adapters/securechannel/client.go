package securechannel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// Verifier authenticates a token and checks its claims with keyNonce as
// the key binding (*adapters/attestation.Verifier).
type Verifier interface {
	Verify(ctx context.Context, token, keyNonce string) (attestation.Claims, error)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	Key      ClientKey // the daemon's identity
	Verifier Verifier
	// MaxReplyBytes bounds the AttestationToken reply (default
	// enclavewire.DefaultMaxFrame).
	MaxReplyBytes int
	Log           *slog.Logger
}

// Client is the daemon's side of the channel. It is safe for concurrent
// use.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Key.Certificate.Certificate) == 0 || cfg.Key.Certificate.PrivateKey == nil {
		return nil, errors.New("attested channel: no client key")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("attested channel: no token verifier")
	}
	if cfg.MaxReplyBytes <= 0 {
		cfg.MaxReplyBytes = enclavewire.DefaultMaxFrame
	}
	c := &Client{cfg: cfg, log: cfg.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Pin returns the pin of the client's key, which the enclave's launch
// configuration must list.
func (c *Client) Pin() attestation.Pin { return c.cfg.Key.Pin }

// Dial connects to addr and runs Handshake.
func (c *Client) Dial(ctx context.Context, network, addr string) (*Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c.Handshake(ctx, raw)
}

// Handshake runs the TLS 1.3 handshake over raw, bounded by ctx, and
// verifies the enclave's token during it: signature, claims, and its
// binding to the key the enclave proved it holds in this handshake. Nothing
// is written to the connection after a refusal (the handshake ends with an
// alert), and raw is closed. The error names the claim or the check that
// failed.
func (c *Client) Handshake(ctx context.Context, raw net.Conn) (*Conn, error) {
	var (
		claims attestation.Claims
		nonce  string
	)
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cfg.Key.Certificate},
		// The enclave's certificate is self-signed for a key made at its
		// start: it is authenticated by the token it carries, checked in
		// VerifyConnection, not by a CA. Go still checks that the server
		// signed the handshake with that certificate's key.
		InsecureSkipVerify: true,
		ServerName:         "sigil-enclave",
		NextProtos:         []string{ALPN},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the enclave presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			tok, err := TokenFromCertificate(leaf)
			if err != nil {
				return err
			}
			nonce = attestation.NonceOf(leaf.RawSubjectPublicKeyInfo)
			if claims, err = c.cfg.Verifier.Verify(ctx, tok, nonce); err != nil {
				return err
			}
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("the enclave did not agree to the %s protocol (ALPN %q)", ALPN, cs.NegotiatedProtocol)
			}
			return nil
		},
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, fmt.Errorf("attested channel to %s: %w (the enclave closed the connection during the TLS handshake: is it serving the attested channel?)", raw.RemoteAddr(), err)
		}
		return nil, fmt.Errorf("attested channel to %s: %w", raw.RemoteAddr(), err)
	}
	conn := &Conn{tc: tc, client: c, nonce: nonce, claims: claims}
	conn.extend(claims, time.Now())
	return conn, nil
}

// attestationTokenRequest is the AttestationToken request, encoded once.
var attestationTokenRequest = enclavewire.AttestationTokenRequest()

// ErrExpired is returned by a Conn's Write once its verified token has
// expired, and wraps the errors of a connection closed for that reason.
var ErrExpired = errors.New("attested channel: the enclave's attestation token expired and was not refreshed; connection closed")

// Conn is an attested connection. It is usable until the expiry of the
// last token verified on it (ValidUntil): Write refuses after that, and a
// timer closes the connection at that instant even if it is idle. The
// owner extends it with Refresh (RefreshIfDue), between requests. Read and
// Write may run concurrently with each other, as for any net.Conn; Refresh
// must not run concurrently with a request.
type Conn struct {
	tc     *tls.Conn
	client *Client
	nonce  string

	mu        sync.Mutex
	claims    attestation.Claims
	until     time.Time
	refreshAt time.Time
	timer     *time.Timer
	expired   bool
	closed    bool
}

// Claims returns the claims of the last token verified on the connection.
func (c *Conn) Claims() attestation.Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims
}

// ValidUntil returns the expiry of the last token verified on the
// connection: the connection is not used after it.
func (c *Conn) ValidUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.until
}

// RefreshDue reports whether it is time to ask the enclave for its current
// token (attestation.RefreshAt, or a retry after an attempt that did not
// extend the connection).
func (c *Conn) RefreshDue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !time.Now().Before(c.refreshAt)
}

// RefreshIfDue runs Refresh when RefreshDue.
func (c *Conn) RefreshIfDue(ctx context.Context) error {
	if !c.RefreshDue() {
		return nil
	}
	return c.Refresh(ctx)
}

// Refresh asks the enclave for its current token over the connection (an
// AttestationToken request and its reply), verifies it bound to the key of
// this connection, and extends the connection to its expiry. It sets and
// then clears the connection's deadline (from ctx). An enclave that has no
// valid token answers with an error: the connection stays usable until it
// expires and the next attempt is scheduled (the error is returned). A
// transport failure, a malformed reply or a token that fails verification
// closes the connection.
func (c *Conn) Refresh(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.tc.SetDeadline(dl)
		defer func() { _ = c.tc.SetDeadline(time.Time{}) }()
	}
	if err := enclavewire.WriteFrame(c, attestationTokenRequest); err != nil {
		return c.fail(fmt.Errorf("attestation token refresh: %w", err))
	}
	payload, err := enclavewire.ReadFrame(c.tc, c.client.cfg.MaxReplyBytes)
	if err != nil {
		return c.fail(fmt.Errorf("attestation token refresh: %w", c.wrap(err)))
	}
	tok, err := enclavewire.DecodeAttestationTokenReply(payload)
	var rerr *enclavewire.RPCError
	if errors.As(err, &rerr) {
		c.mu.Lock()
		c.refreshAt = attestation.RetryAt(time.Now(), c.until)
		until := c.until
		c.mu.Unlock()
		c.client.log.Warn("the enclave could not give a fresh attestation token; the connection closes when its token expires unless a later refresh succeeds",
			"error", rerr.Error(), "valid_until", until.UTC().Format(time.RFC3339))
		return fmt.Errorf("attestation token refresh: the enclave answered: %w", rerr)
	}
	if err != nil {
		return c.fail(fmt.Errorf("attestation token refresh: %w", err))
	}
	claims, err := c.client.cfg.Verifier.Verify(ctx, tok, c.nonce)
	if err != nil {
		return c.fail(fmt.Errorf("attestation token refresh: %w", err))
	}
	c.extend(claims, time.Now())
	return nil
}

// ErrNotAdmitted is wrapped by Admitted's error when the enclave refused
// the client's key.
var ErrNotAdmitted = errors.New("the enclave refused this daemon's key")

// Admitted asks the enclave for its token once, right after the handshake,
// and reads the reply. TLS 1.3 lets a client's handshake complete before
// the server has checked the client's certificate, and tells the client of
// a refusal (an alert) only when it next reads: Admitted turns that into an
// error naming the client's pin (wrapping ErrNotAdmitted) before the
// connection carries anything else. The reply's token is verified as a
// refresh's, and extends the connection if it is newer; an enclave's error
// reply (it holds no valid token right now) is an admission too. A failure
// closes the connection.
func (c *Conn) Admitted(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.tc.SetDeadline(dl)
		defer func() { _ = c.tc.SetDeadline(time.Time{}) }()
	}
	if err := enclavewire.WriteFrame(c, attestationTokenRequest); err != nil {
		return c.fail(c.notAdmitted(err))
	}
	payload, err := enclavewire.ReadFrame(c.tc, c.client.cfg.MaxReplyBytes)
	if err != nil {
		return c.fail(c.notAdmitted(err))
	}
	tok, err := enclavewire.DecodeAttestationTokenReply(payload)
	var rerr *enclavewire.RPCError
	if errors.As(err, &rerr) {
		return nil
	}
	if err != nil {
		return c.fail(fmt.Errorf("attested channel to %s: the first reply: %w", c.tc.RemoteAddr(), err))
	}
	claims, err := c.client.cfg.Verifier.Verify(ctx, tok, c.nonce)
	if err != nil {
		return c.fail(fmt.Errorf("attested channel to %s: the first reply's token: %w", c.tc.RemoteAddr(), err))
	}
	if claims.Expiry.After(c.ValidUntil()) {
		c.extend(claims, time.Now())
	}
	return nil
}

// notAdmitted explains a failure of the first exchange: a TLS alert is
// the enclave refusing the client's certificate.
func (c *Conn) notAdmitted(err error) error {
	var alert tls.AlertError
	if errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls:") || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("attested channel to %s: %w %s (%v): the enclave's %s must list it", c.tc.RemoteAddr(), ErrNotAdmitted, c.client.Pin(), err, attestation.DefaultClientPinsEnv)
	}
	return fmt.Errorf("attested channel to %s: the first exchange: %w", c.tc.RemoteAddr(), err)
}

// extend records a verified token: the connection is valid until its
// expiry if that is later than the current one.
func (c *Conn) extend(claims attestation.Claims, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !claims.Expiry.After(c.until) {
		// Not newer: the enclave has not renewed yet.
		c.refreshAt = attestation.RetryAt(now, c.until)
		return
	}
	c.claims, c.until = claims, claims.Expiry
	c.refreshAt = attestation.RefreshAt(claims.IssuedAt, claims.Expiry)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.until.Sub(now), c.onTimer)
	} else {
		c.timer.Reset(c.until.Sub(now))
	}
}

func (c *Conn) onTimer() {
	c.mu.Lock()
	if c.closed || time.Now().Before(c.until) {
		if !c.closed {
			c.timer.Reset(time.Until(c.until))
		}
		c.mu.Unlock()
		return
	}
	c.expired = true
	until := c.until
	c.mu.Unlock()
	c.client.log.Warn("attested channel: the enclave's token expired without a refresh; connection closed",
		"remote", c.tc.RemoteAddr().String(), "expired", until.UTC().Format(time.RFC3339))
	_ = c.close()
}

// usable reports whether the connection may send: not expired by the clock
// even if the timer has not fired yet.
func (c *Conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.expired && !time.Now().Before(c.until) {
		c.expired = true
	}
	return !c.expired
}

func (c *Conn) wrap(err error) error {
	c.mu.Lock()
	expired := c.expired
	c.mu.Unlock()
	if expired && err != nil && !errors.Is(err, ErrExpired) {
		return fmt.Errorf("%w (%v)", ErrExpired, err)
	}
	return err
}

func (c *Conn) fail(err error) error {
	_ = c.close()
	return err
}

// Write writes to the connection, unless its token has expired: then it
// closes the connection and returns ErrExpired.
func (c *Conn) Write(b []byte) (int, error) {
	if !c.usable() {
		_ = c.close()
		return 0, ErrExpired
	}
	n, err := c.tc.Write(b)
	return n, c.wrap(err)
}

// Read reads from the connection.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.tc.Read(b)
	return n, c.wrap(err)
}

// Close closes the connection and stops its expiry timer.
func (c *Conn) Close() error { return c.close() }

func (c *Conn) close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.closed = true
	c.mu.Unlock()
	return c.tc.Close()
}

// ConnectionState returns the TLS state (the enclave's certificate, …).
func (c *Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.tc.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.tc.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }

// NetConn returns the underlying connection (for liveness probes that peek
// at the socket).
func (c *Conn) NetConn() net.Conn { return c.tc.NetConn() }
