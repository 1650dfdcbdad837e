package nitro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
)

// DisplayName is the driver's display name, as Signatory's nitro vault names
// itself (the vault label of Signatory's metrics).
const DisplayName = "NitroEnclave"

// DefaultKeyFile is Signatory's default Nitro key file, under base_dir.
const DefaultKeyFile = "enclave_keys.json"

// VaultConfig is the `nitro` vault's configuration section: Signatory's
// fields, then Sigil's pool settings. Absent fields fall back to the
// environment variables Signatory reads.
type VaultConfig struct {
	EnclaveCID         *int64       `yaml:"enclave_cid"`          // ENCLAVE_CID, default 16
	EnclavePort        *int64       `yaml:"enclave_port"`         // ENCLAVE_PORT, default 2000
	EncryptionKeyID    string       `yaml:"encryption_key_id"`    // ENCRYPTION_KEY_ID (or AWS_KMS_ENCRYPTION_KEY_ID)
	ProxyLocalPort     *int64       `yaml:"proxy_local_port"`     // PROXY_LOCAL_PORT, default 8000
	ProxyRemoteAddress string       `yaml:"proxy_remote_address"` // PROXY_REMOTE_ADDRESS
	Credentials        *Credentials `yaml:"credentials"`
	Storage            *struct {
		Driver string    `yaml:"driver"`
		Config yaml.Node `yaml:"config"`
	} `yaml:"storage"`
	// Sigil extensions.
	Connections *int   `yaml:"connections"`  // 1 to 256, default 4
	DialTimeout string `yaml:"dial_timeout"` // Go duration, 1ms to 10m, default 5s
	RPCTimeout  string `yaml:"rpc_timeout"`  // Go duration, 1ms to 10m, default 10s
}

// Ranges of the vsock settings: context ids 0-2 are the hypervisor, local
// and host, and 0xFFFFFFFF means any; port 0xFFFFFFFF means any.
const (
	minCID  = 3
	maxCID  = 0xFFFFFFFE
	minPort = 1
	maxPort = 0xFFFFFFFE
)

// vsockSetting resolves a numeric setting: the YAML value, else the
// environment variable, else def; then checks its range. Errors name the
// field (or variable) and the allowed range.
func vsockSetting(v *int64, field, env string, def, lo, hi int64) (uint32, error) {
	src := field
	if v == nil {
		if s := strings.TrimSpace(os.Getenv(env)); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, domain.Errorf(domain.KindInvalid, "nitro: $%s (%s) is not a number: %q", env, field, s)
			}
			v, src = &n, "$"+env+" ("+field+")"
		} else {
			v = &def
		}
	}
	if *v < lo || *v > hi {
		return 0, domain.Errorf(domain.KindInvalid, "nitro: %s %d is out of range (allowed: %d to %d)", src, *v, lo, hi)
	}
	return uint32(*v), nil
}

func envOr(v string, names ...string) string {
	if strings.TrimSpace(v) != "" {
		return v
	}
	for _, n := range names {
		if e := os.Getenv(n); e != "" {
			return e
		}
	}
	return ""
}

// settings is a validated VaultConfig.
type settings struct {
	cfg       Config
	proxyPort uint32
	proxyTo   string
}

func (vc *VaultConfig) resolve(ctx context.Context) (settings, error) {
	var s settings
	var err error
	if s.cfg.CID, err = vsockSetting(vc.EnclaveCID, "enclave_cid", "ENCLAVE_CID", DefaultCID, minCID, maxCID); err != nil {
		return s, err
	}
	if s.cfg.Port, err = vsockSetting(vc.EnclavePort, "enclave_port", "ENCLAVE_PORT", DefaultPort, minPort, maxPort); err != nil {
		return s, err
	}
	if s.proxyPort, err = vsockSetting(vc.ProxyLocalPort, "proxy_local_port", "PROXY_LOCAL_PORT", DefaultProxyPort, minPort, maxPort); err != nil {
		return s, err
	}
	s.proxyTo = strings.TrimSpace(envOr(vc.ProxyRemoteAddress, "PROXY_REMOTE_ADDRESS"))
	if s.proxyTo != "" {
		if _, _, err := netSplit(s.proxyTo); err != nil {
			return s, domain.Errorf(domain.KindInvalid, "nitro: proxy_remote_address %q: want host:port", s.proxyTo)
		}
	}
	s.cfg.EncryptionKeyID = strings.TrimSpace(envOr(vc.EncryptionKeyID, "ENCRYPTION_KEY_ID", "AWS_KMS_ENCRYPTION_KEY_ID"))
	if s.cfg.EncryptionKeyID == "" {
		return s, domain.Errorf(domain.KindInvalid, "nitro: missing encryption_key_id (or $ENCRYPTION_KEY_ID)")
	}
	if s.cfg.Pool.Connections, err = enclaverpc.Connections(vc.Connections); err != nil {
		return s, err
	}
	if s.cfg.Pool.DialTimeout, err = enclaverpc.ParseDuration("dial_timeout", vc.DialTimeout); err != nil {
		return s, err
	}
	if s.cfg.Pool.RPCTimeout, err = enclaverpc.ParseDuration("rpc_timeout", vc.RPCTimeout); err != nil {
		return s, err
	}
	if s.cfg.Credentials, err = NewCredentialSource(ctx, vc.Credentials); err != nil {
		return s, err
	}
	return s, nil
}

// storage returns the key storage driver and its section; with neither,
// Signatory's Nitro key file under baseDir (not Confidential Space's).
func (vc *VaultConfig) storage(baseDir string) (string, func(any) error) {
	driver, sdecode := "", (func(any) error)(nil)
	if vc.Storage != nil {
		driver = vc.Storage.Driver
		if vc.Storage.Config.Kind != 0 {
			sdecode = config.StrictDecoder(&vc.Storage.Config)
		}
	}
	if (driver == "" || driver == "file") && sdecode == nil && baseDir != "" {
		sdecode = func(v any) error {
			p, ok := v.(*string)
			if !ok {
				return fmt.Errorf("nitro: the file storage takes a path")
			}
			*p = filepath.Join(baseDir, DefaultKeyFile)
			return nil
		}
	}
	return driver, sdecode
}

// CheckVault is the vault.Checker of the `nitro` driver: it validates the
// section (settings, ranges, credentials' shape, the storage section)
// without dialling the enclave or AWS.
func CheckVault(_ string, decode func(any) error, env vault.Env) error {
	var vc VaultConfig
	if decode != nil {
		if err := decode(&vc); err != nil {
			return domain.Errorf(domain.KindInvalid, "nitro: invalid config: %v", err)
		}
	}
	if _, err := vc.resolve(context.Background()); err != nil {
		return err
	}
	if env.CheckStorage != nil {
		driver, sdecode := vc.storage(env.BaseDir)
		if err := env.CheckStorage(driver, sdecode); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	return nil
}

// OpenVault is the vault.Opener of the `nitro` driver, reaching the enclave
// over vsock.
var OpenVault = NewOpener(nil, nil)

// NewOpener returns a `nitro` vault opener that reaches the enclave with
// dial and listens for the KMS proxy with listen (nil: vsock for both).
// Tests pass TCPDial and a TCP listener.
func NewOpener(dial Dial, listen func(port uint32) (net.Listener, error)) vault.Opener {
	if listen == nil {
		listen = vsockListen
	}
	return func(ctx context.Context, name string, decode func(any) error, env vault.Env) (vault.Instance, error) {
		var vc VaultConfig
		if decode != nil {
			if err := decode(&vc); err != nil {
				return vault.Instance{}, domain.Errorf(domain.KindInvalid, "nitro: invalid config: %v", err)
			}
		}
		s, err := vc.resolve(ctx)
		if err != nil {
			return vault.Instance{}, err
		}
		s.cfg.Dial = dial
		s.cfg.Pool.LogState = env.Daemon
		if env.OpenStorage == nil {
			return vault.Instance{}, fmt.Errorf("nitro: no storage opener")
		}
		driver, sdecode := vc.storage(env.BaseDir)
		store, err := env.OpenStorage(ctx, driver, sdecode)
		if err != nil {
			return vault.Instance{}, fmt.Errorf("storage: %w", err)
		}
		closers := []func() error{func() error {
			if c, ok := store.(io.Closer); ok {
				return c.Close()
			}
			return nil
		}}
		closeAll := func() error {
			var errs []error
			for i := len(closers) - 1; i >= 0; i-- {
				errs = append(errs, closers[i]())
			}
			return errors.Join(errs...)
		}
		if s.proxyTo != "" {
			ln, err := listen(s.proxyPort)
			if err != nil {
				return vault.Instance{}, errors.Join(fmt.Errorf("nitro: KMS proxy on vsock port %d: %w", s.proxyPort, err), closeAll())
			}
			p := startProxy(ln, s.proxyTo, env.Logger)
			closers = append(closers, p.Close)
		}
		enc, err := New(s.cfg, env.Logger)
		if err != nil {
			return vault.Instance{}, errors.Join(err, closeAll())
		}
		closers = append(closers, enc.Close)
		return vault.Instance{Enclave: enc, Store: store, Display: DisplayName, Close: closeAll}, nil
	}
}

func netSplit(addr string) (string, string, error) { return net.SplitHostPort(addr) }
