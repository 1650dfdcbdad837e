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
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
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
	BaseDir string `yaml:"base_dir"`
	// BaseDirSet records that the base directory was chosen explicitly (a
	// base_dir in the file or the --base-dir flag) rather than defaulted.
	BaseDirSet bool `yaml:"-"`

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

	// Sigil extensions, shared by both listeners (zero: the default).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // default 10s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // default 30s
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // default 60s
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // default 120s
	MaxConnections    int           `yaml:"max_connections"`     // per listener, default 1024
}

// Listener defaults (Sigil extensions of the server section).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxConnections    = 1024
)

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

// StrictDecoder returns a decoder of a raw YAML section (variables already
// expanded by Parse) that refuses unknown fields, so a misspelt driver
// setting is never silently ignored, and whose errors carry the file's own
// line numbers and name the field; nil when the section is absent.
func StrictDecoder(n *yaml.Node) func(any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	return func(v any) error { return decodeNode(n, "", v) }
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
	// AllowedChains restricts consensus requests to these chain ids.
	AllowedChains []string `yaml:"allowed_chains"`
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
			return fmt.Errorf("line %d: authorized_keys: %s: %w", n.Line, quote(s), err)
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
			c := &Config{BaseDir: baseDir, BaseDirSet: baseDir != ""}
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

// Parse parses configuration text: one YAML document. After parsing,
// $VAR, ${VAR} and ${VAR:-default} in every scalar (keys and values) are
// replaced from the environment; a variable that is not set and has no
// default is an error naming it and the field, never an empty value.
// ${BASE_DIR}, unless set in the environment, is the base directory (baseDir
// if non-empty, else the file's base_dir, else the default). Unknown fields
// are errors: they are usually typos of a setting. Every error carries the
// file's line number and the field's path.
func Parse(data []byte, baseDir string) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		if bytes.Contains(data, []byte("${")) {
			return nil, fmt.Errorf("parsing YAML: %w (variables are expanded after parsing: where a ${VAR} is inside [ ] or { }, quote it: [\"${VAR}\"])", err)
		}
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("line %d: a second YAML document: the configuration is one document (remove the `---` and what follows, or merge it)", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if root != nil && root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, fmt.Errorf("line %d: the configuration must be a mapping of settings (base_dir, server, vaults, tezos, …)", root.Line)
	}
	baseDirSet := baseDir != ""
	if root != nil && root.Kind == yaml.MappingNode {
		if baseDir == "" {
			if n := mapValue(root, "base_dir"); n != nil {
				if err := expandScalar(n, "base_dir", envLookup("")); err != nil {
					return nil, err
				}
				baseDir = n.Value
				baseDirSet = strings.TrimSpace(baseDir) != ""
			}
		}
		if baseDir == "" {
			baseDir = DefaultBaseDir
		}
		if err := expandNode(root, "", envLookup(baseDir)); err != nil {
			return nil, err
		}
		if err := checkPresentLists(root); err != nil {
			return nil, err
		}
	}
	var c Config
	if root != nil && root.Kind == yaml.MappingNode {
		if err := decodeNode(root, "", &c); err != nil {
			return nil, err
		}
	}
	if baseDir == "" {
		baseDir = DefaultBaseDir
	}
	c.BaseDir = baseDir
	c.BaseDirSet = baseDirSet
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// mapValue returns the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// checkPresentLists refuses an authorized_keys setting that is present but
// empty (after expansion): it would silently turn client authentication
// off. Leave the field out to run without authentication.
func checkPresentLists(root *yaml.Node) error {
	check := func(n *yaml.Node, path string) error {
		if n == nil {
			return nil
		}
		empty := (n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Tag == "" && (n.Value == "" || n.Value == "~" || n.Value == "null"))) ||
			(n.Kind == yaml.ScalarNode && strings.TrimSpace(n.Value) == "") ||
			(n.Kind == yaml.SequenceNode && len(n.Content) == 0)
		if empty {
			return fmt.Errorf("line %d: %s: present but empty; list at least one public key, or remove the field to accept unauthenticated requests", n.Line, path)
		}
		return nil
	}
	if srv := mapValue(root, "server"); srv != nil && srv.Kind == yaml.MappingNode {
		if err := check(mapValue(srv, "authorized_keys"), "server.authorized_keys"); err != nil {
			return err
		}
	}
	if tz := mapValue(root, "tezos"); tz != nil && tz.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(tz.Content); i += 2 {
			pol := tz.Content[i+1]
			if pol.Kind != yaml.MappingNode {
				continue
			}
			if err := check(mapValue(pol, "authorized_keys"), "tezos."+tz.Content[i].Value+".authorized_keys"); err != nil {
				return err
			}
		}
	}
	return nil
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
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{&c.Server.ReadTimeout, DefaultReadTimeout},
		{&c.Server.WriteTimeout, DefaultWriteTimeout},
		{&c.Server.IdleTimeout, DefaultIdleTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Server.MaxConnections == 0 {
		c.Server.MaxConnections = DefaultMaxConnections
	}
}

// Validate checks what can be checked without opening drivers.
func (c *Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout},
		{"server.read_timeout", c.Server.ReadTimeout},
		{"server.write_timeout", c.Server.WriteTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout},
	} {
		if d.v < 100*time.Millisecond || d.v > time.Hour {
			return fmt.Errorf("%s: %s is out of range (want 100ms to 1h)", d.name, d.v)
		}
	}
	if c.Server.MaxConnections < 1 || c.Server.MaxConnections > 1<<20 {
		return fmt.Errorf("server.max_connections: %d is out of range (want 1 to %d)", c.Server.MaxConnections, 1<<20)
	}
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
			return fmt.Errorf("tezos.%s: %w", domain.Echo(pkh), err)
		}
		if p == nil {
			continue // a bare entry: Signatory's default policy
		}
		for _, id := range p.AllowedChains {
			if _, err := request.ParseChainID(id); err != nil {
				return fmt.Errorf("tezos.%s.allowed_chains: %w", pkh, err)
			}
		}
	}
	if c.Watermark != nil && c.Watermark.Driver == "" {
		return errors.New("watermark.driver: required field is missing")
	}
	return nil
}
