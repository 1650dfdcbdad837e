package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/config"
)

// errorFormat is the one format of configuration errors read from a file:
// FILE:LINE: FIELD: problem (FIELD absent only for the document as a
// whole: a syntax error, a second document).
var errorFormat = regexp.MustCompile(`^(?P<file>[^:\n]+):(?P<line>[1-9][0-9]*): (?P<field>[^ :\n][^ \n]*: )?\S`)

// baseConfig is a valid configuration the cases below break one line at a
// time (its line numbers are the ones expected).
const baseConfig = `base_dir: /var/lib/sigil
server:
  address: :6732
  read_timeout: 30s
  max_connections: 64
vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
tezos:
  tz1burnburnburnburnburnburnburjAYjjX:
    allowed_chains: [NetXdQprcVkpaWU]
    allow:
      block:
watermark:
  driver: file
`

// TestErrorFormatEverySite: every kind of error the loader reports, read
// from a file, is FILE:LINE: FIELD: problem, with the line of the field (or
// of its section when the field is absent), and "did you mean" where a
// name is misspelt.
func TestErrorFormatEverySite(t *testing.T) {
	t.Setenv("SIGIL_TEST_EMPTY", "")
	for name, tc := range map[string]struct {
		from, to string // replace in baseConfig
		line     int
		field    string
		want     string // in the problem
	}{
		"top-level field":         {"base_dir:", "basedir:", 1, "basedir", "unknown field (did you mean base_dir? known fields: base_dir,"},
		"top-level field, far":    {"watermark:", "watermarks:", 16, "watermarks", "did you mean watermark?"},
		"server field":            {"  address:", "  adress:", 3, "server.adress", "did you mean address?"},
		"server field, two away":  {"  read_timeout:", "  read_timout:", 4, "server.read_timout", "did you mean read_timeout?"},
		"server field, far":       {"  read_timeout:", "  timeout_read:", 4, "server.timeout_read", "unknown field (known fields:"},
		"vault field":             {"    driver: confidentialspace", "    drvier: confidentialspace", 8, "vaults.cs.drvier", "did you mean driver?"},
		"policy field":            {"    allow:", "    alow:", 14, "tezos.tz1burnburnburnburnburnburnburjAYjjX.alow", "did you mean allow?"},
		"policy field, plural":    {"    allowed_chains:", "    allowed_chain:", 13, "tezos.tz1burnburnburnburnburnburnburjAYjjX.allowed_chain", "did you mean allowed_chains?"},
		"watermark field":         {"  driver: file", "  drivr: file", 17, "watermark.drivr", "did you mean driver?"},
		"type":                    {"max_connections: 64", "max_connections: many", 5, "server.max_connections", "cannot unmarshal !!str into int"},
		"range":                   {"read_timeout: 30s", "read_timeout: 1ms", 4, "server.read_timeout", "1ms is out of range"},
		"missing driver":          {"    driver: confidentialspace\n", "", 7, "vaults.cs.driver", "required field is missing"},
		"key address":             {"tz1burnburnburnburnburnburnburjAYjjX:", "tz1nope:", 12, "tezos.tz1nope", "invalid"},
		"chain id":                {"[NetXdQprcVkpaWU]", "[NetXdQprcVkpaWU, Nope]", 13, "tezos.tz1burnburnburnburnburnburnburjAYjjX.allowed_chains[1]", ""},
		"empty restriction":       {"[NetXdQprcVkpaWU]", "[]", 13, "tezos.tz1burnburnburnburnburnburnburjAYjjX.allowed_chains", "present but empty"},
		"unset variable":          {"/var/lib/sigil", "${SIGIL_TEST_UNSET_VARIABLE}", 1, "base_dir", "SIGIL_TEST_UNSET_VARIABLE is not set"},
		"empty variable":          {"host: 127.0.0.1", "host: ${SIGIL_TEST_EMPTY}", 10, "vaults.cs.config.host", "set but empty"},
		"empty base_dir":          {"/var/lib/sigil", "~", 1, "base_dir", "present but empty"},
		"empty location":          {"  driver: file\n", "  driver: file\n  config: {base_dir: ''}\n", 18, "watermark.config.base_dir", "present but empty"},
		"missing watermark drv":   {"  driver: file\n", "  config: {}\n", 16, "watermark.driver", "required field is missing"},
		"policy hook address":     {"watermark:", "policy_hook:\n  address: localhost:8080\nwatermark:", 17, "policy_hook.address", ""},
		"policy hook timeout":     {"watermark:", "policy_hook:\n  address: http://127.0.0.1:1/\n  timeout: 1ns\nwatermark:", 18, "policy_hook.timeout", "out of range"},
		"misspelt section":        {"watermark:", "server2: x\nwatermark:", 16, "server2", "did you mean server?"},
		"jwt password":            {"  max_connections: 64\n", "  max_connections: 64\n  jwt:\n    users:\n      baker:\n        password: short\n        secret: \"Operat0r#Secret-0123456789abcdefgh\"\n", 8, "server.jwt.users.baker", "password should be at least 16 characters"},
		"jwt_exp":                 {"  max_connections: 64\n", "  max_connections: 64\n  jwt:\n    users:\n      baker:\n        password: \"Operat0r-Passw0rd!\"\n        secret: \"Operat0r#Secret-0123456789abcdefgh\"\n        jwt_exp: 0\n", 11, "server.jwt.users.baker.jwt_exp", "out of range"},
		"jwt field":               {"  max_connections: 64\n", "  max_connections: 64\n  jwt:\n    users:\n      baker:\n        pasword: x\n", 9, "server.jwt.users.baker.pasword", "did you mean password?"},
		"authorized key":          {"    allow:", "    authorized_keys: [edpkNOPE]\n    allow:", 14, "tezos.tz1burnburnburnburnburnburnburjAYjjX.authorized_keys", ""},
		"jwt_users without jwt":   {"    allow:", "    jwt_users: [baker]\n    allow:", 14, "tezos.tz1burnburnburnburnburnburnburjAYjjX.jwt_users[0]", "server.jwt is not configured"},
		"syntax":                  {"base_dir: /var/lib/sigil", "base_dir: [1", 1, "", "YAML syntax"},
		"second document":         {"  driver: file\n", "  driver: file\n---\nx: 1\n", 18, "", "a second YAML document"},
		"not a mapping":           {baseConfig, "- a\n", 1, "", "must be a mapping"},
		"per-connection clients":  {"max_connections: 64", "max_connections: 64\n  max_connections_per_client: 65", 6, "server.max_connections_per_client", "out of range"},
		"vault section empty":     {"    driver: confidentialspace\n    config:\n      host: 127.0.0.1\n", "", 7, "vaults.cs", "empty vault section"},
		"flow collection hint":    {"[NetXdQprcVkpaWU]", "[${X]", 12, "", "quote it"}, // the line yaml.v3 reports
		"nested unknown in merge": {"  address: :6732\n", "  <<: {adress: x}\n", 3, "server.adress", "did you mean address?"},
	} {
		t.Run(name, func(t *testing.T) {
			require.Contains(t, baseConfig, tc.from)
			path := filepath.Join(t.TempDir(), "sigil.yaml")
			require.NoError(t, os.WriteFile(path, []byte(strings.Replace(baseConfig, tc.from, tc.to, 1)), 0o600))
			_, err := config.Load(path, false, "")
			require.Error(t, err)
			msg := err.Error()
			assert.Regexp(t, errorFormat, msg)
			prefix := path + ":" + strconv.Itoa(tc.line) + ": "
			if tc.field != "" {
				prefix += tc.field + ": "
			}
			assert.True(t, strings.HasPrefix(msg, prefix), "%s\nwant the prefix %s", msg, prefix)
			assert.Contains(t, msg, tc.want)
			var ce *config.Error
			require.True(t, errors.As(err, &ce), "%T", err)
			assert.Equal(t, path, ce.File)
			assert.Equal(t, tc.line, ce.Line)
		})
	}
}

// TestErrorFormatWithoutFile: text parsed from memory reports "line N:
// FIELD: problem"; a file that cannot be read is FILE: problem.
func TestErrorFormatWithoutFile(t *testing.T) {
	_, err := config.Parse([]byte("sever: {}\n"), "")
	require.EqualError(t, err, "line 1: sever: unknown field (did you mean server? known fields: base_dir, policy_hook, server, tezos, vaults, watermark)")
	path := filepath.Join(t.TempDir(), "missing.yaml")
	_, err = config.Load(path, false, "")
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), path+": reading the configuration: "), err.Error())
}

// TestSeveralTypeErrorsEachInFormat: several wrong values are reported
// each on its own line, each in the format.
func TestSeveralTypeErrorsEachInFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigil.yaml")
	require.NoError(t, os.WriteFile(path, []byte("server:\n  max_connections: many\n  max_connections_per_client: few\n"), 0o600))
	_, err := config.Load(path, false, "")
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 2, err.Error())
	assert.Equal(t, path+":2: server.max_connections: cannot unmarshal !!str into int", lines[0])
	assert.Equal(t, path+":3: server.max_connections_per_client: cannot unmarshal !!str into int", lines[1])
}

// TestDriverSectionErrorsPlaced: a driver section's decoder reports the
// field relative to the section with the file's line; Wrap puts the
// section's path and the file in front, once.
func TestDriverSectionErrorsPlaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigil.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(baseConfig, "host: 127.0.0.1", "hots: 127.0.0.1", 1)), 0o600))
	c, err := config.Load(path, false, "")
	require.NoError(t, err)
	var v struct {
		Host string `yaml:"host"`
		Port int    `yaml:"port"`
	}
	err = c.Vaults["cs"].Decoder()(&v)
	require.Error(t, err)
	placed := c.Wrap("vaults.cs.config", err)
	assert.EqualError(t, placed, path+":10: vaults.cs.config.hots: unknown field (did you mean host? known fields: host, port)")
	// A section that takes no field (the mem watermark backend's) says so.
	err = c.Vaults["cs"].Decoder()(&struct{}{})
	require.Error(t, err)
	assert.EqualError(t, c.Wrap("vaults.cs.config", err), path+":10: vaults.cs.config.hots: unknown field (this section takes no fields)")
	assert.Same(t, placed, c.Wrap("vaults.cs.config", placed), "wrapped twice")
	// A driver's own error about a field it names.
	assert.EqualError(t, c.Wrap("vaults.cs.config", config.FieldErrorf("hots", "must be an address")), path+":10: vaults.cs.config.hots: must be an address")
	// A field absent from the file: the line of its section.
	assert.EqualError(t, c.Wrap("vaults.cs.config", config.FieldErrorf("port", "out of range")), path+":9: vaults.cs.config.port: out of range")
	// Any other error: at the section.
	assert.EqualError(t, c.Wrap("vaults.cs.config", errors.New("cannot do it")), path+":9: vaults.cs.config: cannot do it")
	assert.EqualError(t, c.Errorf("tezos.tz1burnburnburnburnburnburnburjAYjjX.allow.block", "x"), path+":15: tezos.tz1burnburnburnburnburnburnburjAYjjX.allow.block: x")
}

// TestLineOf: the line of a field, of a list entry, of a merged key, and
// of the nearest enclosing field for one that is absent.
func TestLineOf(t *testing.T) {
	c, err := config.Parse([]byte("vaults:\n  v.1:\n    driver: mem\n    config:\n      - k1\n      - k2\ntezos: {}\n"), "")
	require.NoError(t, err)
	for field, want := range map[string]int{
		"vaults":                  1,
		"vaults.v.1":              2,
		"vaults.v.1.driver":       3,
		"vaults.v.1.config":       4,
		"vaults.v.1.config[1]":    6,
		"vaults.v.1.config[7]":    4,
		"vaults.v.1.config.nope":  4,
		"vaults.v.2":              1,
		"tezos.tz1x.allow":        7,
		"nowhere":                 0,
		"":                        0,
		"vaults.v.1.driver.x.y.z": 3,
	} {
		assert.Equal(t, want, c.Line(field), field)
	}
}

// TestSecretKeysNeverRepeated: a secret key written where a name belongs
// (a key address, a driver, a field name) is never repeated by an error.
func TestSecretKeysNeverRepeated(t *testing.T) {
	const sk = "edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbq"
	for _, text := range []string{
		"tezos:\n  " + sk + ":\n    allow: {block: }\n",
		"tezos:\n  " + sk + ": {}\n",
		"server:\n  " + sk + ": 1\n",
		"vaults:\n  " + sk + ":\n    config: {}\n",
		"server:\n  authorized_keys: [" + sk + "]\n",
		"server:\n  address: [" + sk + "]\n",
	} {
		_, err := config.Parse([]byte(text), "")
		require.Error(t, err, text)
		assert.NotContains(t, err.Error(), sk[:12], text)
	}
	assert.NotContains(t, config.Unknown("driver", sk, []string{"file", "mem"}), sk[:12])
}

// TestManyTypeErrorsBounded: a file with many wrong values reports the
// first ten, one per line, and how many more.
func TestManyTypeErrorsBounded(t *testing.T) {
	text := "server:\n"
	for _, f := range []string{"max_connections", "max_connections_per_client", "read_timeout", "write_timeout", "idle_timeout", "read_header_timeout"} {
		text += "  " + f + ": [x]\n"
	}
	text += "vaults:\n"
	for i := range 6 {
		text += "  v" + strconv.Itoa(i) + ": [x]\n"
	}
	_, err := config.Parse([]byte(text), "")
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 11, err.Error())
	assert.Equal(t, "and 2 more values of the wrong type", lines[10])
	for _, l := range lines[:10] {
		assert.Regexp(t, `^line [0-9]+: (server|vaults)\.\S+: cannot unmarshal`, l)
	}
}
