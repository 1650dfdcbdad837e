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
	"github.com/sigil-signer/sigil/adapters/securechannel"
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
	// AttestedChannel, when present, switches the connections to the
	// attested channel (securechannel.ClientSettings, docs/attested-channel.md).
	// It is kept raw so that its presence is known whatever its value: a
	// section that is present but empty or null is an error, never the
	// plain protocol.
	AttestedChannel yaml.Node `yaml:"attested_channel"`
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

// ParseConfig decodes and validates the vault's section as OpenVault and
// CheckVault do (the storage section aside) and returns the enclave
// client's configuration: its AttestedChannel is set exactly when the
// section has attested_channel.
func ParseConfig(decode func(any) error) (Config, error) {
	cfg, _, _, err := parseVault(decode)
	return cfg, err
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
	if cfg.AttestedChannel, err = parseAttested(&vc.AttestedChannel); err != nil {
		return Config{}, err
	}
	if err := cfg.normalize(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseAttested decodes the attested_channel section (nil when absent)
// strictly and checks it, reading the files it names (the client key, the
// issuer's CA, a key set, the PKI root) as the daemon does at start, so
// that `sigil config check` finds what would stop it. A section that is
// present must configure the channel: null, empty or not a mapping is an
// error. Every error names the setting (attested_channel.SETTING, at its
// line).
func parseAttested(n *yaml.Node) (*securechannel.ClientSettings, error) {
	if n.Kind == 0 {
		return nil, nil
	}
	r := n
	for r.Kind == yaml.AliasNode && r.Alias != nil {
		r = r.Alias
	}
	if r.Kind != yaml.MappingNode {
		return nil, domain.Wrap(domain.KindInvalid, &config.Error{Field: attestedField, Line: n.Line,
			Msg: "must be a section with client_key_file and image_digests (remove it to use the plain protocol)"})
	}
	var s securechannel.ClientSettings
	if err := config.StrictDecoder(n)(&s); err != nil {
		return nil, domain.Wrap(domain.KindInvalid, prefixField(attestedField, err))
	}
	if _, err := s.Client(nil); err != nil {
		return nil, settingError(err)
	}
	return &s, nil
}

// attestedField is the section's name in the vault's configuration.
const attestedField = "attested_channel"

// settingError reports an error of securechannel's settings at the
// setting it names.
func settingError(err error) error {
	var se *securechannel.SettingError
	if errors.As(err, &se) {
		return domain.Wrap(domain.KindInvalid, &config.Error{Field: attestedField + "." + se.Setting, Msg: se.Msg, Err: err})
	}
	return domain.Wrap(domain.KindInvalid, &config.Error{Field: attestedField, Msg: err.Error(), Err: err})
}

// prefixField puts prefix in front of the field of every configuration
// error in err (a decoder of the sub-section names fields relative to it).
func prefixField(prefix string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = prefixField(prefix, e)
		}
		return errors.Join(out...)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		return &config.Error{Field: prefix, Msg: err.Error(), Err: err}
	}
	out := *ce
	if out.Field == "" {
		out.Field = prefix
	} else {
		out.Field = prefix + "." + out.Field
	}
	return &out
}

var (
	_ vault.Opener  = OpenVault
	_ vault.Checker = CheckVault
)
