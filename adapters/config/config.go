// Package config is Sigil's configuration adapter: it reads Signatory's YAML
// configuration format (base_dir, server, vaults, tezos policy, watermark),
// expands ${VAR} references from the environment, applies defaults, and
// reports missing or malformed fields by name. Vault and storage sections
// stay raw YAML nodes that each driver decodes itself.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// Defaults, as Signatory's.
const (
	DefaultAddress        = ":6732"
	DefaultUtilityAddress = ":9583"
	DefaultBaseDir        = "/var/lib/sigil"
)

// Config is the whole configuration file.
type Config struct {
	BaseDir    string                  `yaml:"base_dir"`
	Server     Server                  `yaml:"server"`
	Vaults     map[string]*Vault       `yaml:"vaults"`
	Tezos      map[string]*TezosPolicy `yaml:"tezos"`
	Watermark  *Driver                 `yaml:"watermark"`
	PolicyHook yaml.Node               `yaml:"policy_hook"`
}

// Server configures the HTTP listeners.
type Server struct {
	Address        string         `yaml:"address"`
	UtilityAddress string         `yaml:"utility_address"`
	AuthorizedKeys AuthorizedKeys `yaml:"authorized_keys"`
	JWT            yaml.Node      `yaml:"jwt"`
}

// Vault is one vault: a driver name and its raw configuration.
type Vault struct {
	Driver string    `yaml:"driver"`
	Config yaml.Node `yaml:"config"`
}

// Driver is a generic {driver, config} section (watermark, storage).
type Driver struct {
	Driver string    `yaml:"driver"`
	Config yaml.Node `yaml:"config"`
}

// Decoder returns a function decoding the raw config, or nil when absent.
func (d *Driver) Decoder() func(any) error { return nodeDecoder(&d.Config) }

// Decoder returns a function decoding the vault's raw config, or nil when absent.
func (v *Vault) Decoder() func(any) error { return nodeDecoder(&v.Config) }

func nodeDecoder(n *yaml.Node) func(any) error { return StrictDecoder(n) }

// StrictDecoder returns a decoder of a raw YAML section that refuses unknown
// fields, so a misspelt driver setting is never silently ignored; nil when
// the section is absent.
func StrictDecoder(n *yaml.Node) func(any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	return func(v any) error {
		b, err := yaml.Marshal(n)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("section at line %d: %w", n.Line, err)
		}
		return nil
	}
}

// TezosPolicy is the per-key policy section (key: a tz address).
type TezosPolicy struct {
	// Allow maps a request kind (block, preattestation, attestation,
	// generic, …) to the operation kinds allowed within it.
	Allow map[string][]string `yaml:"allow"`
	// AllowedOperations and AllowedKinds are Signatory's older form.
	AllowedOperations      []string       `yaml:"allowed_operations"`
	AllowedKinds           []string       `yaml:"allowed_kinds"`
	LogPayloads            bool           `yaml:"log_payloads"`
	AuthorizedKeys         AuthorizedKeys `yaml:"authorized_keys"`
	AllowProofOfPossession bool           `yaml:"allow_proof_of_possession"`
}

// AuthorizedKeys is one public key or a list of them (Signatory accepts both).
type AuthorizedKeys []tezos.PublicKey

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *AuthorizedKeys) UnmarshalYAML(n *yaml.Node) error {
	var list []string
	switch n.Kind {
	case yaml.ScalarNode:
		list = []string{n.Value}
	case yaml.SequenceNode:
		if err := n.Decode(&list); err != nil {
			return err
		}
	default:
		return fmt.Errorf("line %d: authorized_keys must be a public key or a list of public keys", n.Line)
	}
	for _, s := range list {
		pk, err := tezos.ParsePublicKey(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("line %d: authorized_keys: %q: %w", n.Line, s, err)
		}
		*a = append(*a, pk)
	}
	return nil
}

// Load reads, expands and validates the configuration file at path. A
// missing file is an error unless allowMissing, in which case the defaults
// are returned. A non-empty baseDir overrides the file's base_dir (the
// --base-dir flag).
func Load(path string, allowMissing bool, baseDir string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && allowMissing {
			c := &Config{BaseDir: baseDir}
			c.ApplyDefaults()
			return c, nil
		}
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	c, err := Parse(data, baseDir)
	if err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	return c, nil
}

// Parse parses configuration text. ${VAR} and $VAR are expanded from the
// environment first; ${BASE_DIR}, unless set in the environment, is the
// base directory (baseDir if non-empty, else the file's base_dir, else the
// default). Unknown fields are errors: they are usually typos of a setting.
func Parse(data []byte, baseDir string) (*Config, error) {
	lookup := func(base string) func(string) string {
		return func(k string) string {
			if v, ok := os.LookupEnv(k); ok {
				return v
			}
			if k == "BASE_DIR" {
				return base
			}
			return ""
		}
	}
	if baseDir == "" {
		var probe struct {
			BaseDir string `yaml:"base_dir"`
		}
		_ = yaml.Unmarshal([]byte(os.Expand(string(data), lookup(""))), &probe)
		baseDir = probe.BaseDir
		if baseDir == "" {
			baseDir = DefaultBaseDir
		}
	}
	expanded := os.Expand(string(data), lookup(baseDir))
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	c.BaseDir = baseDir
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.BaseDir == "" {
		c.BaseDir = DefaultBaseDir
	}
	if c.Server.Address == "" {
		c.Server.Address = DefaultAddress
	}
	if c.Server.UtilityAddress == "" {
		c.Server.UtilityAddress = DefaultUtilityAddress
	}
}

// Validate checks what can be checked without opening drivers.
func (c *Config) Validate() error {
	if c.PolicyHook.Kind != 0 {
		return errors.New("policy_hook: not supported by sigil; remove it (requests would otherwise be signed without the hook's approval)")
	}
	if c.Server.JWT.Kind != 0 {
		return errors.New("server.jwt: JWT authentication is not supported by sigil yet; use authorized_keys")
	}
	for name, v := range c.Vaults {
		if v == nil {
			return fmt.Errorf("vaults.%s: empty vault section", name)
		}
		if v.Driver == "" {
			return fmt.Errorf("vaults.%s.driver: required field is missing", name)
		}
	}
	for pkh, p := range c.Tezos {
		if _, err := tezos.ParsePublicKeyHash(pkh); err != nil {
			return fmt.Errorf("tezos.%s: %w", pkh, err)
		}
		if p == nil {
			c.Tezos[pkh] = &TezosPolicy{}
		}
	}
	if c.Watermark != nil && c.Watermark.Driver == "" {
		return errors.New("watermark.driver: required field is missing")
	}
	return nil
}

// ExpandPath expands ${VAR} in a path; ${BASE_DIR} is the configured base
// directory.
func (c *Config) ExpandPath(p string) string {
	return os.Expand(p, func(k string) string {
		if k == "BASE_DIR" {
			return c.BaseDir
		}
		return os.Getenv(k)
	})
}
