// Package config is Sigil's configuration adapter: it reads Signatory's YAML
// configuration format (base_dir, server, vaults, tezos policy, watermark),
// expands ${VAR} references from the environment, applies defaults, and
// reports missing or malformed fields by name. Vault and storage sections
// stay raw YAML nodes that each driver decodes itself. JWT users
// (server.jwt) and the policy hook (policy_hook) are checked here with the
// rules of their adapters, so that a bad one stops the program before
// anything is dialled; passwords and secrets never appear in an error.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/jwtauth"
	"github.com/sigil-signer/sigil/adapters/policyhook"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/suggest"
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
	// BaseDirFlag is --base-dir ("" when not given); it takes priority
	// over the file's base_dir, as in Signatory.
	BaseDirFlag string `yaml:"-"`
	// FileBaseDir is the file's base_dir, expanded ("" when absent).
	FileBaseDir string `yaml:"-"`

	// File is the configuration file's path ("" when parsed from
	// memory), for errors.
	File string `yaml:"-"`
	// root is the parsed document (variables expanded), for the line
	// numbers of errors.
	root *yaml.Node

	Server     Server                  `yaml:"server"`
	Vaults     map[string]*Vault       `yaml:"vaults"`
	Tezos      map[string]*TezosPolicy `yaml:"tezos"`
	Watermark  *Driver                 `yaml:"watermark"`
	PolicyHook *PolicyHook             `yaml:"policy_hook"`
}

// PolicyHook is an external policy service asked before every signature
// the key's policy allows (Signatory's policy_hook).
type PolicyHook struct {
	// Address is the hook's http:// or https:// URL.
	Address string `yaml:"address"`
	// AuthorizedKeys, when set, are the keys one of which must sign the
	// hook's replies.
	AuthorizedKeys AuthorizedKeys `yaml:"authorized_keys"`
	// Timeout bounds one call (Sigil extension; default 5s).
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultPolicyHookTimeout is policy_hook.timeout's default.
const DefaultPolicyHookTimeout = policyhook.DefaultTimeout

// JWT is server.jwt: the users that may log in (POST /login) and present
// tokens.
type JWT struct {
	Users map[string]*JWTUser `yaml:"users"`
}

// JWTUser is one server.jwt.users entry.
type JWTUser struct {
	Password Secret `yaml:"password"`
	Secret   Secret `yaml:"secret"`
	// Exp is the token lifetime in minutes (jwt_exp); nil means 60.
	Exp *uint64 `yaml:"jwt_exp"`
	// OldCredExp is when the current credentials stop being accepted next
	// to NewData ("YYYY-MM-DD hh:mm:ss", UTC).
	OldCredExp string `yaml:"old_cred_exp"`
	// NewData are the credentials replacing these.
	NewData *JWTCredentials `yaml:"new_data"`
}

// JWTCredentials is a user's new_data.
type JWTCredentials struct {
	Password Secret  `yaml:"password"`
	Secret   Secret  `yaml:"secret"`
	Exp      *uint64 `yaml:"jwt_exp"`
}

// Format prints a user without its credentials, whatever the verb.
func (u JWTUser) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{password:[redacted] secret:[redacted] jwt_exp:%s old_cred_exp:%q new_data:%v}", minutes(u.Exp), u.OldCredExp, u.NewData)
}

// Format prints new credentials without their values, whatever the verb.
func (c JWTCredentials) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{password:[redacted] secret:[redacted] jwt_exp:%s}", minutes(c.Exp))
}

func minutes(v *uint64) string {
	if v == nil {
		return "default"
	}
	return fmt.Sprintf("%dm", *v)
}

// Secret is a configuration value that must never be printed: it formats
// and logs as [redacted].
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// maxJWTExp bounds jwt_exp, in minutes.
const maxJWTExp = uint64(jwtauth.MaxTTL / time.Minute)

func jwtExp(field string, v *uint64) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 1 || *v > maxJWTExp {
		return 0, errorAt(0, field, "%d is out of range (want 1 to %d minutes; leave it out for 60)", *v, maxJWTExp)
	}
	return time.Duration(*v) * time.Minute, nil
}

// AuthUsers converts server.jwt.users for the JWT authenticator, checking each
// user with its rules. Errors name the user and the field, never a value.
func (j *JWT) AuthUsers() (map[string]jwtauth.User, error) {
	if j == nil || len(j.Users) == 0 {
		return nil, errorAt(0, "server.jwt.users", "no user configured (remove server.jwt to run without JWT authentication)")
	}
	out := make(map[string]jwtauth.User, len(j.Users))
	for _, name := range slices.Sorted(maps.Keys(j.Users)) {
		u := j.Users[name]
		field := "server.jwt.users." + name
		if u == nil {
			return nil, errorAt(0, field, "empty entry (password and secret are required)")
		}
		ttl, err := jwtExp(field+".jwt_exp", u.Exp)
		if err != nil {
			return nil, err
		}
		ju := jwtauth.User{Credentials: jwtauth.Credentials{Password: string(u.Password), Secret: string(u.Secret), TTL: ttl}}
		if u.NewData != nil {
			nttl, err := jwtExp(field+".new_data.jwt_exp", u.NewData.Exp)
			if err != nil {
				return nil, err
			}
			ju.Next = &jwtauth.Credentials{Password: string(u.NewData.Password), Secret: string(u.NewData.Secret), TTL: nttl}
		}
		if strings.TrimSpace(u.OldCredExp) != "" {
			t, err := jwtauth.ParseOldCredExp(u.OldCredExp)
			if err != nil {
				return nil, &Error{Field: field + ".old_cred_exp", Msg: err.Error(), Err: err}
			}
			ju.OldUntil = t
		}
		if err := jwtauth.CheckUser(name, ju); err != nil {
			return nil, &Error{Field: field, Msg: strings.TrimPrefix(err.Error(), "user "+name+": "), Err: err}
		}
		out[name] = ju
	}
	return out, nil
}

// Server configures the HTTP listeners.
type Server struct {
	Address        string         `yaml:"address"`
	UtilityAddress string         `yaml:"utility_address"`
	AuthorizedKeys AuthorizedKeys `yaml:"authorized_keys"`
	JWT            *JWT           `yaml:"jwt"`

	// Sigil extensions, shared by both listeners (zero: the default).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // default 3s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // default 30s
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // default 60s
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // default 120s
	MaxConnections    int           `yaml:"max_connections"`     // per listener, default 1024
	// MaxConnectionsPerClient bounds one client address's open
	// connections per listener (default 128, at most max_connections).
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// Listener defaults (Sigil extensions of the server section).
const (
	DefaultReadHeaderTimeout       = 3 * time.Second // a client trickling its headers holds a connection this long
	DefaultReadTimeout             = 30 * time.Second
	DefaultWriteTimeout            = 60 * time.Second
	DefaultIdleTimeout             = 120 * time.Second
	DefaultMaxConnections          = 1024
	DefaultMaxConnectionsPerClient = 128
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
	// JWTUsers, when set, are the only server.jwt users that may use the
	// key.
	JWTUsers []string `yaml:"jwt_users"`
}

// AuthorizedKeys is one public key or a list of them; as in Signatory, a
// list may nest lists (e.g. YAML anchors of shared key groups), which are
// flattened.
type AuthorizedKeys []tezos.PublicKey

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *AuthorizedKeys) UnmarshalYAML(n *yaml.Node) error {
	return a.add(n, 0)
}

func (a *AuthorizedKeys) add(n *yaml.Node, depth int) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if depth > 8 {
		return fmt.Errorf("line %d: lists nested more than 8 deep", n.Line)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		v := strings.TrimSpace(n.Value)
		if v == "" || n.ShortTag() == "!!null" {
			return nil // no key: a list of nothing is refused as a whole (checkRestrictions)
		}
		pk, err := tezos.ParsePublicKey(v)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, echoKey(v), err)
		}
		*a = append(*a, pk)
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if err := a.add(c, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("line %d: must be a public key or a list of public keys", n.Line)
	}
	return nil
}

// echoKey repeats a value given as a public key only when it has a
// public key's prefix: anything else may be a secret key (or a password)
// written in the wrong place, and is described by its length alone.
func echoKey(v string) string {
	for _, p := range []string{"edpk", "sppk", "p2pk", "BLpk"} {
		if strings.HasPrefix(v, p) {
			return quote(v)
		}
	}
	return fmt.Sprintf("a value of %d characters that is not a public key (not repeated: it may be a secret)", len(v))
}

// Load reads, expands and validates the configuration file at path. A
// missing file is an error unless allowMissing, in which case the defaults
// are returned. A non-empty baseDir overrides the file's base_dir (the
// --base-dir flag).
func Load(path string, allowMissing bool, baseDir string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && allowMissing {
			c := &Config{BaseDir: baseDir, BaseDirSet: baseDir != "", BaseDirFlag: baseDir}
			c.ApplyDefaults()
			return c, nil
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("reading the configuration: %v", err), Err: err}
	}
	c, err := Parse(data, baseDir)
	if err != nil {
		return nil, withFile(err, path)
	}
	c.File = path
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
			return nil, syntaxError(err, " (variables are expanded after parsing: where a ${VAR} is inside [ ] or { }, quote it: [\"${VAR}\"])")
		}
		return nil, syntaxError(err, "")
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errorAt(extra.Line, "", "a second YAML document: the configuration is one document (remove the `---` and what follows, or merge it)")
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(err, "")
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if root != nil && root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, errorAt(root.Line, "", "the configuration must be a mapping of settings (base_dir, server, vaults, tezos, …)")
	}
	if err := checkAliasBudget(&doc); err != nil {
		return nil, err
	}
	flag := baseDir
	var fileBaseDir string
	if root != nil && root.Kind == yaml.MappingNode {
		// The file's base_dir is expanded first (its ${BASE_DIR} cannot
		// refer to itself), even when --base-dir overrides it: the state
		// directory check compares the two.
		if n := resolve(mapValue(root, "base_dir")); n != nil {
			if n.Kind != yaml.ScalarNode {
				return nil, errorAt(n.Line, "base_dir", "must be a directory path")
			}
			v := *n // expanded again with the rest of the document
			if err := expandScalar(&v, "base_dir", envLookup(flag)); err != nil {
				return nil, err
			}
			if strings.TrimSpace(v.Value) == "" || v.ShortTag() == "!!null" {
				return nil, errorAt(n.Line, "base_dir", "%s; remove it to use %s, or give the state directory", presentEmpty, DefaultBaseDir)
			}
			fileBaseDir = v.Value
		}
		if baseDir == "" {
			baseDir = fileBaseDir
		}
		if baseDir == "" {
			baseDir = DefaultBaseDir
		}
		if err := expandNode(root, "", envLookup(baseDir)); err != nil {
			return nil, err
		}
	}
	c := Config{root: root}
	if root != nil && root.Kind == yaml.MappingNode {
		if err := decodeNode(root, "", &c); err != nil {
			return nil, err
		}
		if err := checkRestrictions(root, &c); err != nil {
			return nil, err
		}
		if err := checkLocations(root); err != nil {
			return nil, err
		}
	}
	if baseDir == "" {
		baseDir = DefaultBaseDir
	}
	c.BaseDir = baseDir
	c.BaseDirSet = flag != "" || fileBaseDir != ""
	c.BaseDirFlag = flag
	c.FileBaseDir = fileBaseDir
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// mapValue returns the value of key in mapping n (aliases and merge keys
// followed), or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	for _, p := range pairs(n) {
		if p.key == key {
			return p.value
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
	if c.Server.MaxConnectionsPerClient == 0 {
		c.Server.MaxConnectionsPerClient = min(DefaultMaxConnectionsPerClient, c.Server.MaxConnections)
	}
	if c.PolicyHook != nil && c.PolicyHook.Timeout == 0 {
		c.PolicyHook.Timeout = DefaultPolicyHookTimeout
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
			return c.errorf(d.name, "%s is out of range (want 100ms to 1h)", d.v)
		}
	}
	if c.Server.MaxConnections < 1 || c.Server.MaxConnections > 1<<20 {
		return c.errorf("server.max_connections", "%d is out of range (want 1 to %d)", c.Server.MaxConnections, 1<<20)
	}
	if n := c.Server.MaxConnectionsPerClient; n < 1 || n > c.Server.MaxConnections {
		return c.errorf("server.max_connections_per_client", "%d is out of range (want 1 to server.max_connections, %d)", n, c.Server.MaxConnections)
	}
	if h := c.PolicyHook; h != nil {
		if h.Address == "" {
			return c.errorf("policy_hook.address", "required field is missing")
		}
		if err := policyhook.CheckAddress(h.Address); err != nil {
			return c.Wrap("policy_hook.address", err)
		}
		if h.Timeout < 100*time.Millisecond || h.Timeout > 5*time.Minute {
			return c.errorf("policy_hook.timeout", "%s is out of range (want 100ms to 5m)", h.Timeout)
		}
	}
	var jwtUsers map[string]jwtauth.User
	if c.Server.JWT != nil {
		var err error
		if jwtUsers, err = c.Server.JWT.AuthUsers(); err != nil {
			return c.Wrap("", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Vaults)) {
		v := c.Vaults[name]
		if v == nil {
			return c.errorf("vaults."+name, "empty vault section")
		}
		if v.Driver == "" {
			return c.errorf("vaults."+name+".driver", "required field is missing")
		}
	}
	for _, pkh := range slices.Sorted(maps.Keys(c.Tezos)) {
		p := c.Tezos[pkh]
		if looksSecret(pkh) {
			// A secret key pasted where the key's address belongs: never
			// repeated (the field's path hides it too).
			return c.errorf("tezos."+pkh, "not a key address but what looks like a secret key (not repeated): name each key by its tz1/tz2/tz3/tz4 address, and keep secret keys out of the configuration")
		}
		if _, err := tezos.ParsePublicKeyHash(pkh); err != nil {
			return c.errorf("tezos."+pkh, "%v", err)
		}
		if p == nil {
			continue // a bare entry: Signatory's default policy
		}
		for i, id := range p.AllowedChains {
			if _, err := request.ParseChainID(id); err != nil {
				return c.errorf(fmt.Sprintf("tezos.%s.allowed_chains[%d]", pkh, i), "%v", err)
			}
		}
		for i, u := range p.JWTUsers {
			field := fmt.Sprintf("tezos.%s.jwt_users[%d]", pkh, i)
			if jwtUsers == nil {
				return c.errorf(field, "server.jwt is not configured, so no request could come from %q (Signatory would let every request through)", domain.Echo(u))
			}
			if _, ok := jwtUsers[u]; !ok {
				return c.errorf(field, "%q is not a user of server.jwt.users%s", domain.Echo(u), suggest.Phrase(u, slices.Sorted(maps.Keys(jwtUsers))))
			}
		}
	}
	if c.Watermark != nil && c.Watermark.Driver == "" {
		return c.errorf("watermark.driver", "required field is missing")
	}
	return nil
}
