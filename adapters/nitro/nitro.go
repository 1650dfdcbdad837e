// Package nitro is the ports.Enclave backend for ECAD Labs' enclave-signer
// running in an AWS Nitro Enclave, configured like Signatory's `nitro`
// vault. What is specific to Nitro is small: the enclave is reached over
// vsock (context id and port, vsock.go), a new connection's Initialize
// carries AWS credentials, the KMS key id and the region (credentials.go),
// and the host may run a vsock-to-TCP proxy through which the enclave
// reaches AWS KMS (proxy.go). The pooled protocol client is
// adapters/enclaverpc; the vault opener is vault.go.
package nitro

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
)

// Signatory's defaults.
const (
	DefaultCID       = 16
	DefaultPort      = 2000
	DefaultProxyPort = 8000
)

// Config configures the Nitro enclave client.
type Config struct {
	CID  uint32 // enclave context id
	Port uint32 // enclave vsock port
	// EncryptionKeyID is the AWS KMS key id or ARN the enclave seals with.
	EncryptionKeyID string
	// Credentials produces the AWS credentials and region that each new
	// connection's Initialize carries.
	Credentials CredentialSource
	// Pool holds the pool settings (Connections, DialTimeout, RPCTimeout,
	// MaxReplyBytes; zero means the default). Its Name, Addr, Dial and
	// Initialize are set by New.
	Pool enclaverpc.Config
	// Dial reaches the enclave; nil means vsock.
	Dial Dial
}

// Dial returns the dialer of the enclave at (cid, port). The default is
// vsock; tests and development substitute TCP to the mock enclave (the one
// seam).
type Dial func(cid, port uint32) enclaverpc.Dialer

// New returns the Nitro enclave client; connections come up in the
// background. log may be nil.
func New(cfg Config, log *slog.Logger) (*enclaverpc.Client, error) {
	if cfg.EncryptionKeyID == "" {
		return nil, domain.Errorf(domain.KindInvalid, "nitro: missing encryption_key_id")
	}
	if cfg.Credentials == nil {
		return nil, domain.Errorf(domain.KindInvalid, "nitro: no AWS credential source")
	}
	dial := cfg.Dial
	if dial == nil {
		dial = vsockDialer
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool := cfg.Pool
	pool.Name = "nitro"
	pool.Addr = fmt.Sprintf("vsock %d:%d", cfg.CID, cfg.Port)
	pool.Dial = dial(cfg.CID, cfg.Port)
	keyID, creds := cfg.EncryptionKeyID, cfg.Credentials
	pool.Initialize = func(ctx context.Context) (*enclavewire.Request, error) {
		c, err := creds.Retrieve(ctx)
		if err != nil {
			return nil, fmt.Errorf("AWS credentials: %w", err)
		}
		c.EncryptionKeyID = keyID
		return enclavewire.NewInitializeAWS(c), nil
	}
	return enclaverpc.New(pool, log.With("component", "nitro"))
}

// TCPDial dials the mock enclave over TCP at addr whatever the context id
// and port (development and tests, with `sigil-enclave --mode nitro`).
func TCPDial(addr string) Dial {
	return func(uint32, uint32) enclaverpc.Dialer { return enclaverpc.TCPDialer(addr) }
}
