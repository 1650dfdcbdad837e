// Package confidentialspace is the ports.Enclave backend for a Google Cloud
// Confidential Space enclave running ECAD Labs' enclave-signer (or Sigil's
// enclave, sigil-enclave): what is specific to it is TCP to host:port —
// plain, or the attested channel (TLS 1.3 to an enclave whose Google-signed
// attestation token is verified before anything is sent, attested.go) when
// the vault's attested_channel section is set — and an Initialize carrying
// the Workload Identity Pool provider and KMS key paths. The pooled protocol
// client itself is adapters/enclaverpc.
package confidentialspace

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain"
)

// Defaults for Config fields left zero.
const (
	DefaultPort        = "2000"
	DefaultConnections = enclaverpc.DefaultConnections
	DefaultDialTimeout = enclaverpc.DefaultDialTimeout
	DefaultRPCTimeout  = enclaverpc.DefaultRPCTimeout
	MaxConnections     = enclaverpc.MaxConnections
)

// Config configures the enclave client.
type Config struct {
	Host              string
	Port              string // default 2000
	WIPProviderPath   string
	EncryptionKeyPath string
	Connections       int           // pool size, default 4, at most 256
	DialTimeout       time.Duration // default 5s
	RPCTimeout        time.Duration // per request on the wire, default 10s
	MaxReplyBytes     int           // default enclavewire.DefaultMaxFrame (1 MiB)
	// LogState logs the pool's changes of state (enclaverpc.Config.LogState).
	LogState bool
	// AttestedChannel, when set, makes every connection the attested
	// channel (attested.go); nil is the plain protocol, byte-compatible with
	// enclave-signer.
	AttestedChannel *securechannel.ClientSettings
}

func (c *Config) normalize() error {
	switch {
	case strings.TrimSpace(c.Host) == "":
		return domain.Errorf(domain.KindInvalid, "confidential space: missing host")
	case strings.TrimSpace(c.WIPProviderPath) == "":
		return domain.Errorf(domain.KindInvalid, "confidential space: missing wip_provider_path")
	case strings.TrimSpace(c.EncryptionKeyPath) == "":
		return domain.Errorf(domain.KindInvalid, "confidential space: missing encryption_key_path")
	}
	if c.AttestedChannel != nil {
		if err := c.AttestedChannel.Check(); err != nil {
			return settingError(err)
		}
	}
	if c.Port == "" {
		c.Port = DefaultPort
	}
	if p, err := strconv.Atoi(c.Port); err != nil || p < 1 || p > 65535 {
		return domain.Errorf(domain.KindInvalid, "confidential space: invalid port %q (allowed: 1 to 65535)", c.Port)
	}
	pc := c.pool()
	pc.Dial, pc.Initialize = enclaverpc.TCPDialer(""), func(context.Context) (*enclavewire.Request, error) { return nil, nil }
	if err := pc.Normalize(); err != nil {
		return err
	}
	c.Connections, c.DialTimeout, c.RPCTimeout, c.MaxReplyBytes = pc.Connections, pc.DialTimeout, pc.RPCTimeout, pc.MaxReplyBytes
	return nil
}

func (c *Config) pool() enclaverpc.Config {
	return enclaverpc.Config{
		Name:          "confidential space",
		Addr:          net.JoinHostPort(c.Host, c.Port),
		Connections:   c.Connections,
		DialTimeout:   c.DialTimeout,
		RPCTimeout:    c.RPCTimeout,
		MaxReplyBytes: c.MaxReplyBytes,
		LogState:      c.LogState,
	}
}

// Enclave is the Confidential Space enclave client: an enclaverpc.Client
// over TCP. It implements ports.Enclave.
type Enclave struct {
	*enclaverpc.Client
	cfg  Config
	addr string
}

// New validates cfg and starts the connection pool in the background; it
// does not wait for the enclave. log may be nil.
func New(cfg Config, log *slog.Logger) (*Enclave, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc := cfg.pool()
	creds := enclavewire.Credentials{WIPProviderPath: cfg.WIPProviderPath, EncryptionKeyPath: cfg.EncryptionKeyPath}
	pc.Dial = enclaverpc.TCPDialer(pc.Addr)
	if cfg.AttestedChannel != nil {
		cl, err := cfg.AttestedChannel.Client(log.With("component", "confidentialspace"))
		if err != nil {
			return nil, settingError(err)
		}
		pc.Dial, pc.Refresh = attestedDialer(cl, pc.Addr), refreshAttested
	}
	pc.Initialize = func(context.Context) (*enclavewire.Request, error) { return enclavewire.NewInitialize(creds), nil }
	c, err := enclaverpc.New(pc, log.With("component", "confidentialspace"))
	if err != nil {
		return nil, err
	}
	return &Enclave{Client: c, cfg: cfg, addr: pc.Addr}, nil
}
