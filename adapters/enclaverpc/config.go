// Package enclaverpc is the client of the enclave-signer protocol
// (adapters/enclavewire) that every remote enclave backend shares,
// whatever carries it: it knows nothing of Google Cloud or AWS. A backend
// gives it a Dialer (TCP or the attested channel's TLS for Confidential
// Space, vsock for Nitro), an Initializer (the Initialize request a new
// connection sends, with that platform's credentials) and, for a channel
// whose connections expire, a Refresh hook; the Client does the rest and
// implements ports.Enclave.
//
// The Client keeps a pool of connections, each initialized and holding
// every loaded key (key handles are per connection). A request runs on the
// caller's goroutine on an idle connection taken from the pool (no hand-off
// to another goroutine). One request, one reply: before every request the
// connection is peeked at without reading and without regard to any
// deadline (one system call); a connection the enclave closed is redialled
// and one holding bytes nobody asked for is replaced, before the request is
// sent. A reply of the wrong type or content breaks the connection and the
// request is retried once on another one, as is a request that got no
// reply. Every signature is verified with the key's public key before it
// is returned; one that does not verify fails the request
// (ports.ErrEnclaveBadSignature) and the connection is dropped. One keeper
// goroutine per connection dials and redials it with capped backoff,
// imports every known key onto it while no request waits, and looks at it
// every second while idle (for free: an idle connection costs no redial,
// import or KMS call), so that a restarted enclave is noticed and Ready
// tells the truth, with the cause. Requests fail at once, naming the cause,
// when every connection's latest attempt failed. Ready also reports a
// reconnected enclave that cannot open a stored key (for example one
// initialized with another KMS key), naming the key, until the key opens
// again. With Config.LogState the pool logs its changes of state, once each.
package enclaverpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
)

// Defaults and bounds of Config fields.
const (
	DefaultConnections = 4
	MaxConnections     = 256
	DefaultDialTimeout = 5 * time.Second
	DefaultRPCTimeout  = 10 * time.Second
	// MinTimeout and MaxTimeout bound DialTimeout and RPCTimeout.
	MinTimeout = time.Millisecond
	MaxTimeout = 10 * time.Minute
	// MaxReplyLimit bounds MaxReplyBytes.
	MaxReplyLimit = 64 << 20
)

// Dialer opens one connection to the enclave. The Client bounds it with
// DialTimeout through ctx. An error that wraps ErrRefused says the enclave
// was reached and refused the connection (a handshake it would not
// complete, an attestation the dialer would not accept): the Client then
// waits longer between attempts, as after an Initialize the enclave
// refused.
type Dialer func(ctx context.Context) (net.Conn, error)

// ErrRefused is wrapped by a Dialer's errors when the enclave was reached
// and the connection refused.
var ErrRefused = errors.New("refused")

// Initializer returns the Initialize request for a new connection. It is
// called for every connection and redial, so that short-lived credentials
// are fetched afresh; ctx bounds it.
type Initializer func(ctx context.Context) (*enclavewire.Request, error)

// Config configures a Client.
type Config struct {
	// Name is the backend's name in logs and errors ("confidential space").
	Name string
	// Addr is the enclave's address as logs and errors show it.
	Addr string
	// Dial opens a connection (required).
	Dial Dialer
	// Initialize builds each connection's Initialize request (required).
	Initialize Initializer
	// Connections is the pool size: 0 means DefaultConnections, else 1 to
	// MaxConnections.
	Connections int
	// DialTimeout bounds a dial plus its Initialize: 0 means
	// DefaultDialTimeout, else MinTimeout to MaxTimeout.
	DialTimeout time.Duration
	// RPCTimeout bounds one request on the wire: 0 means DefaultRPCTimeout,
	// else MinTimeout to MaxTimeout.
	RPCTimeout time.Duration
	// MaxReplyBytes bounds a reply frame: 0 means enclavewire.DefaultMaxFrame, else
	// 1 KiB to MaxReplyLimit.
	MaxReplyBytes int
	// IdleProbe is how often an idle connection is looked at (one
	// non-blocking peek) so that an enclave restart is noticed, and Ready
	// tells, before the next request: 0 means DefaultIdleProbe.
	IdleProbe time.Duration
	// Refresh, if set, is called on a connection before each request and
	// at each idle probe, bounded by RPCTimeout: the attested channel
	// refreshes its attestation token in band there when it is due
	// (securechannel.Conn.RefreshIfDue). An enclave's error reply
	// (*enclavewire.RPCError) leaves the connection usable; any other
	// error breaks it (it was closed).
	Refresh func(ctx context.Context, nc net.Conn) error
	// LogState logs the pool's changes of state (unreachable and why,
	// lost, restored, keys the enclave cannot open) at warning or error
	// level, once per change: for a daemon, where no caller hears of them.
	// Without it (one-shot commands, whose requests fail with the cause)
	// they are logged at debug level.
	LogState bool
}

// DefaultIdleProbe is the default Config.IdleProbe.
const DefaultIdleProbe = time.Second

// Normalize validates the numeric settings (an error names the field and
// its allowed range) and fills in defaults for those left zero. Field names
// in errors are the configuration file's (connections, dial_timeout,
// rpc_timeout).
func (c *Config) Normalize() error {
	name := c.Name
	if name == "" {
		name = "enclave"
	}
	switch {
	case c.Connections == 0:
		c.Connections = DefaultConnections
	case c.Connections < 1 || c.Connections > MaxConnections:
		return domain.Errorf(domain.KindInvalid, "%s: connections %d is out of range (allowed: 1 to %d)", name, c.Connections, MaxConnections)
	}
	for _, d := range []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{{"dial_timeout", &c.DialTimeout, DefaultDialTimeout}, {"rpc_timeout", &c.RPCTimeout, DefaultRPCTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < MinTimeout || *d.v > MaxTimeout:
			return domain.Errorf(domain.KindInvalid, "%s: %s %v is out of range (allowed: %v to %v)", name, d.field, *d.v, MinTimeout, MaxTimeout)
		}
	}
	switch {
	case c.IdleProbe == 0:
		c.IdleProbe = DefaultIdleProbe
	case c.IdleProbe < MinTimeout || c.IdleProbe > MaxTimeout:
		return domain.Errorf(domain.KindInvalid, "%s: idle probe %v is out of range (allowed: %v to %v)", name, c.IdleProbe, MinTimeout, MaxTimeout)
	}
	switch {
	case c.MaxReplyBytes == 0:
		c.MaxReplyBytes = enclavewire.DefaultMaxFrame
	case c.MaxReplyBytes < 1024 || c.MaxReplyBytes > MaxReplyLimit:
		return domain.Errorf(domain.KindInvalid, "%s: max reply size %d is out of range (allowed: 1024 to %d bytes)", name, c.MaxReplyBytes, MaxReplyLimit)
	}
	if c.Dial == nil || c.Initialize == nil {
		return domain.Errorf(domain.KindInvalid, "%s: no dialer or no Initialize payload", name)
	}
	return nil
}

// ParseDuration parses an optional duration setting of a configuration
// file: "" is 0 (the default); anything else must be a Go duration within
// MinTimeout and MaxTimeout. An error names the field (relative to the
// driver's section, config.FieldErrorf: the configuration check adds the
// file, line and section) and is domain.KindInvalid.
func ParseDuration(field, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fieldError(field, "invalid duration %s (want a duration such as 5s)", domain.EchoName(s))
	}
	if d < MinTimeout || d > MaxTimeout {
		return 0, fieldError(field, "%v is out of range (allowed: %v to %v)", d, MinTimeout, MaxTimeout)
	}
	return d, nil
}

// Connections validates an optional `connections` setting of a
// configuration file (nil: absent, the default); errors as ParseDuration's.
func Connections(v *int) (int, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 1 || *v > MaxConnections {
		return 0, fieldError("connections", "%d is out of range (allowed: 1 to %d)", *v, MaxConnections)
	}
	return *v, nil
}

// fieldError is an invalid setting of the driver's section at field.
func fieldError(field, format string, args ...any) error {
	return domain.Wrap(domain.KindInvalid, config.FieldErrorf(field, format, args...))
}

// TCPDialer dials addr over TCP with keep-alives and Nagle's algorithm off
// (one small frame per request).
func TCPDialer(addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{KeepAlive: 30 * time.Second}
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		return nc, nil
	}
}

func (c *Config) String() string { return fmt.Sprintf("%s enclave at %s", c.Name, c.Addr) }
