package securechannel

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/domain/attestation"
)

// ALPN is the application protocol both ends announce: the enclave
// protocol (4-byte length + CBOR frames), version 1 of this channel. A
// client that offers another protocol is refused by the server.
const ALPN = "sigil-enclave/1"

// TokenProvider gives the enclave's current token (*attestation.Source).
type TokenProvider interface {
	Current() (adattest.Token, error)
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Key is the enclave's ephemeral TLS key; the tokens Tokens gives must
	// be bound to it (their eat_nonce holds KeyNonce(Key.Public())).
	Key    *ecdsa.PrivateKey
	Tokens TokenProvider
	// ClientPins lists the clients admitted (at least one).
	ClientPins []attestation.Pin
	Log        *slog.Logger
}

// String never shows the key.
func (c ServerConfig) String() string {
	return fmt.Sprintf("securechannel.ServerConfig{%d client pins}", len(c.ClientPins))
}

// GoString implements fmt.GoStringer like String.
func (c ServerConfig) GoString() string { return c.String() }

// Server is the enclave's side of the channel. Its methods are safe for
// concurrent use.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	nonce string
	tls   *tls.Config

	mu      sync.Mutex
	cert    *tls.Certificate
	certTok string

	closers []func()
}

// NewServer checks cfg and returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Key == nil || cfg.Tokens == nil {
		return nil, errors.New("attested channel: no key or no token source")
	}
	if len(cfg.ClientPins) == 0 {
		return nil, fmt.Errorf("attested channel: no client pin: %s lists none, so no daemon could connect", attestation.DefaultClientPinsEnv)
	}
	nonce, err := KeyNonce(cfg.Key.Public())
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, nonce: nonce}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.tls = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		GetCertificate:         s.getCertificate,
		ClientAuth:             tls.RequireAnyClientCert,
		VerifyConnection:       s.verifyClient,
		SessionTicketsDisabled: true, // every connection sees the current token and a full handshake
		NextProtos:             []string{ALPN},
	}
	return s, nil
}

// KeyNonce returns the nonce that binds tokens to the server's key.
func (s *Server) KeyNonce() string { return s.nonce }

// TLSConfig returns the server's TLS configuration (TLS 1.3 only, the
// current token in the certificate, pinned client certificates required).
func (s *Server) TLSConfig() *tls.Config { return s.tls }

// Handshake runs the server's handshake on raw, bounded by ctx, and returns
// the TLS connection and the client's pin. On error raw is closed.
func (s *Server) Handshake(ctx context.Context, raw net.Conn) (*tls.Conn, attestation.Pin, error) {
	c := tls.Server(raw, s.tls)
	if err := c.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, attestation.Pin{}, err
	}
	return c, PeerPin(c.ConnectionState()), nil
}

// PeerPin returns the pin of the peer's certificate key (zero if none).
func PeerPin(cs tls.ConnectionState) attestation.Pin {
	if len(cs.PeerCertificates) == 0 {
		return attestation.Pin{}
	}
	return attestation.PinOf(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
}

func (s *Server) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("attested channel: the client presented no certificate")
	}
	pin := PeerPin(cs)
	if !attestation.ContainsPin(s.cfg.ClientPins, pin) {
		return fmt.Errorf("attested channel: client key %s is not pinned (%s)", pin, attestation.DefaultClientPinsEnv)
	}
	return nil
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	tok, err := s.cfg.Tokens.Current()
	if err != nil {
		return nil, fmt.Errorf("attested channel: handshake refused: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && s.certTok == tok.Raw {
		return s.cert, nil
	}
	val, err := asn1.MarshalWithParams(tok.Raw, "utf8")
	if err != nil {
		return nil, err
	}
	der, err := selfSigned(s.cfg.Key, "sigil enclave", tok.IssuedAt.Add(-time.Minute), tok.Expiry,
		[]pkix.Extension{{Id: TokenOID, Value: val}})
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: s.cfg.Key, Leaf: leaf}
	s.certTok = tok.Raw
	return s.cert, nil
}

// CurrentToken returns the enclave's current token, bound to the server's
// key (enclaveside.TokenSource: the AttestationToken request's answer), or
// an error when it holds no valid one.
func (s *Server) CurrentToken() (string, error) {
	tok, err := s.cfg.Tokens.Current()
	if err != nil {
		return "", err
	}
	return tok.Raw, nil
}

// Close stops what OpenServer started (the token source); a Server made by
// NewServer has nothing to stop.
func (s *Server) Close() {
	for _, c := range s.closers {
		c()
	}
}
