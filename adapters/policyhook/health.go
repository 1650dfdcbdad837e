package policyhook

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/ports"
)

// probeTimeout bounds one reachability probe (the caller's context may
// bound it further).
const probeTimeout = 2 * time.Second

// probe checks that the hook's address can be reached without sending it a
// request: a TCP connection to its host and port, and for https a TLS
// handshake (so an expired or wrong certificate shows too). No HTTP request
// is sent: a hook may count, log or act on every request it receives, and
// only a POST of a real sign request means anything to it.
type probe struct {
	addr  string // host:port
	host  string // for TLS server name verification
	https bool
	tls   *tls.Config // the transport's, when it has one (tests' roots)
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newProbe(address string, dial func(context.Context, string, string) (net.Conn, error)) probe {
	p := probe{dial: dial}
	u, err := url.Parse(address)
	if err != nil {
		return p
	}
	p.https = u.Scheme == "https"
	p.host = u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[bool]string{true: "443", false: "80"}[p.https]
	}
	p.addr = net.JoinHostPort(p.host, port)
	if p.dial == nil {
		p.dial = (&net.Dialer{}).DialContext
	}
	return p
}

var _ ports.HealthChecker = (*Hook)(nil)

// Healthy implements ports.HealthChecker: nil when the hook's address
// accepts a connection (and, for https, completes a TLS handshake) within
// the probe's bound. A hook that cannot be reached fails every sign
// request, so the signer is not ready while it is down. The error names
// the failure, not the address (the /healthz body strips addresses anyway).
func (h *Hook) Healthy(ctx context.Context) error {
	p := h.probe
	if p.addr == "" {
		return domain.Errorf(domain.KindUnavailable, "policy hook: invalid address")
	}
	ctx, cancel := context.WithTimeout(ctx, min(probeTimeout, h.timeout))
	defer cancel()
	conn, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return domain.Errorf(domain.KindUnavailable, "policy hook unreachable: %w", err)
	}
	defer conn.Close()
	if !p.https {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.tls != nil {
		cfg = p.tls.Clone()
	}
	cfg.ServerName = p.host
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return domain.Errorf(domain.KindUnavailable, "policy hook: TLS handshake failed: %w", err)
	}
	_ = tc.Close()
	return nil
}
