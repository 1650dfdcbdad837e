package confidentialspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/enclaverpc"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
)

// DisplayName is the driver's display name, as Signatory's confidentialspace
// vault names itself (the vault label of Signatory's metrics).
const DisplayName = "ConfidentialSpace"

// VaultConfig is the `confidentialspace` vault's configuration section,
// Signatory's fields plus Sigil's pool settings. Empty fields fall back to
// the environment variables Signatory reads.
type VaultConfig struct {
	Host              string `yaml:"host"`                // CONFIDENTIAL_SPACE_HOST
	Port              string `yaml:"port"`                // CONFIDENTIAL_SPACE_PORT, default 2000
	WIPProviderPath   string `yaml:"wip_provider_path"`   // GCP_WIP_PROVIDER_PATH
	EncryptionKeyPath string `yaml:"encryption_key_path"` // GCP_KMS_ENCRYPTION_KEY_PATH
	Storage           *struct {
		Driver string    `yaml:"driver"`
		Config yaml.Node `yaml:"config"`
	} `yaml:"storage"`
	// Sigil extensions.
	Connections *int   `yaml:"connections"`  // 1 to 256, default 4
	DialTimeout string `yaml:"dial_timeout"` // Go duration, 1ms to 10m, default 5s
	RPCTimeout  string `yaml:"rpc_timeout"`  // Go duration, 1ms to 10m, default 10s
}

const backendName = "confidential space"

func envOr(v, name string) string {
	if strings.TrimSpace(v) == "" {
		return os.Getenv(name)
	}
	return v
}

// OpenVault is the vault.Opener of the `confidentialspace` driver: it opens
// the key storage, then the enclave client (connections come up in the
// background).
func OpenVault(ctx context.Context, name string, decode func(any) error, env vault.Env) (vault.Instance, error) {
	cfg, driver, sdecode, err := parseVault(decode)
	if err != nil {
		return vault.Instance{}, err
	}
	if env.OpenStorage == nil {
		return vault.Instance{}, fmt.Errorf("confidential space: no storage opener")
	}
	store, err := env.OpenStorage(ctx, driver, sdecode)
	if err != nil {
		return vault.Instance{}, fmt.Errorf("storage: %w", err)
	}
	closeStore := func() error {
		if c, ok := store.(io.Closer); ok {
			return c.Close()
		}
		return nil
	}
	cfg.LogState = env.Daemon
	enc, err := New(cfg, env.Logger)
	if err != nil {
		return vault.Instance{}, errors.Join(err, closeStore())
	}
	return vault.Instance{Enclave: enc, Store: store, Display: DisplayName, Close: func() error {
		return errors.Join(enc.Close(), closeStore())
	}}, nil
}

// CheckVault is the vault.Checker of the `confidentialspace` driver: the
// section and its storage section are validated as OpenVault reads them,
// and nothing is opened or dialled.
func CheckVault(_ string, decode func(any) error, env vault.Env) error {
	_, driver, sdecode, err := parseVault(decode)
	if err != nil {
		return err
	}
	if env.CheckStorage != nil {
		if err := env.CheckStorage(driver, sdecode); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	return nil
}

// parseVault decodes and validates the section: the enclave client's
// configuration, and the storage driver name with its raw section.
func parseVault(decode func(any) error) (cfg Config, driver string, sdecode func(any) error, err error) {
	var vc VaultConfig
	if decode != nil {
		if err := decode(&vc); err != nil {
			return Config{}, "", nil, domain.Errorf(domain.KindInvalid, "confidential space: invalid config: %v", err)
		}
	}
	if cfg, err = vc.clientConfig(); err != nil {
		return Config{}, "", nil, err
	}
	if vc.Storage != nil {
		driver = vc.Storage.Driver
		if vc.Storage.Config.Kind != 0 {
			sdecode = config.StrictDecoder(&vc.Storage.Config)
		}
	}
	return cfg, driver, sdecode, nil
}

// clientConfig applies Signatory's environment fallbacks and reports every
// missing required field with its variable.
func (vc VaultConfig) clientConfig() (Config, error) {
	cfg := Config{
		Host:              envOr(vc.Host, "CONFIDENTIAL_SPACE_HOST"),
		Port:              envOr(vc.Port, "CONFIDENTIAL_SPACE_PORT"),
		WIPProviderPath:   envOr(vc.WIPProviderPath, "GCP_WIP_PROVIDER_PATH"),
		EncryptionKeyPath: envOr(vc.EncryptionKeyPath, "GCP_KMS_ENCRYPTION_KEY_PATH"),
	}
	var missing []string
	for _, f := range []struct{ v, field, env string }{
		{cfg.Host, "host", "CONFIDENTIAL_SPACE_HOST"},
		{cfg.WIPProviderPath, "wip_provider_path", "GCP_WIP_PROVIDER_PATH"},
		{cfg.EncryptionKeyPath, "encryption_key_path", "GCP_KMS_ENCRYPTION_KEY_PATH"},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, fmt.Sprintf("%s (or $%s)", f.field, f.env))
		}
	}
	if len(missing) > 0 {
		return Config{}, domain.Errorf(domain.KindInvalid, "confidential space: missing %s", strings.Join(missing, ", "))
	}
	var err error
	if cfg.Connections, err = enclaverpc.Connections(vc.Connections); err != nil {
		return Config{}, err
	}
	if cfg.DialTimeout, err = enclaverpc.ParseDuration("dial_timeout", vc.DialTimeout); err != nil {
		return Config{}, err
	}
	if cfg.RPCTimeout, err = enclaverpc.ParseDuration("rpc_timeout", vc.RPCTimeout); err != nil {
		return Config{}, err
	}
	if err := cfg.normalize(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

var (
	_ vault.Opener  = OpenVault
	_ vault.Checker = CheckVault
)
