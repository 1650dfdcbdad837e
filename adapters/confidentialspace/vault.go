package confidentialspace

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
)

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
	Connections int    `yaml:"connections"`  // default 4
	DialTimeout string `yaml:"dial_timeout"` // Go duration, default 5s
	RPCTimeout  string `yaml:"rpc_timeout"`  // Go duration, default 10s
}

func envOr(v, name string) string {
	if strings.TrimSpace(v) == "" {
		return os.Getenv(name)
	}
	return v
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, domain.Errorf(domain.KindInvalid, "confidential space: invalid %s %q (want a duration such as 5s)", field, s)
	}
	return d, nil
}

// OpenVault is the vault.Opener of the `confidentialspace` driver: it opens
// the key storage, then the enclave client (connections come up in the
// background).
func OpenVault(ctx context.Context, name string, decode func(any) error, env vault.Env) (vault.Instance, error) {
	var vc VaultConfig
	if decode != nil {
		if err := decode(&vc); err != nil {
			return vault.Instance{}, domain.Errorf(domain.KindInvalid, "confidential space: invalid config: %v", err)
		}
	}
	cfg := Config{
		Host:              envOr(vc.Host, "CONFIDENTIAL_SPACE_HOST"),
		Port:              envOr(vc.Port, "CONFIDENTIAL_SPACE_PORT"),
		WIPProviderPath:   envOr(vc.WIPProviderPath, "GCP_WIP_PROVIDER_PATH"),
		EncryptionKeyPath: envOr(vc.EncryptionKeyPath, "GCP_KMS_ENCRYPTION_KEY_PATH"),
		Connections:       vc.Connections,
	}
	var err error
	if cfg.DialTimeout, err = parseDuration("dial_timeout", vc.DialTimeout); err != nil {
		return vault.Instance{}, err
	}
	if cfg.RPCTimeout, err = parseDuration("rpc_timeout", vc.RPCTimeout); err != nil {
		return vault.Instance{}, err
	}
	if err := cfg.normalize(); err != nil {
		return vault.Instance{}, err
	}
	if env.OpenStorage == nil {
		return vault.Instance{}, fmt.Errorf("confidential space: no storage opener")
	}
	driver := ""
	var sdecode func(any) error
	if vc.Storage != nil {
		driver = vc.Storage.Driver
		if vc.Storage.Config.Kind != 0 {
			node := vc.Storage.Config
			sdecode = node.Decode
		}
	}
	store, err := env.OpenStorage(ctx, driver, sdecode)
	if err != nil {
		return vault.Instance{}, fmt.Errorf("storage: %w", err)
	}
	log := env.Logger
	if log != nil {
		log = log.With("vault", name)
	}
	enc, err := New(cfg, log)
	if err != nil {
		return vault.Instance{}, err
	}
	return vault.Instance{Enclave: enc, Store: store, Close: enc.Close}, nil
}

var _ vault.Opener = OpenVault
