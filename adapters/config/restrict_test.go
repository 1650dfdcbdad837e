package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/config"
)

// goodValues is, for every restricting setting, a non-empty value that
// loads (the rule must not refuse what it should accept).
var goodValues = map[string]string{
	"server.authorized_keys":      "[" + hookPK + "]",
	"server.jwt.users":            "{baker: {password: \"" + pass1 + "\", secret: \"" + secret1 + "\"}}",
	"server.jwt":                  "{users: {baker: {password: \"" + pass1 + "\", secret: \"" + secret1 + "\"}}}",
	"policy_hook":                 "{address: http://127.0.0.1:1/policy}",
	"policy_hook.authorized_keys": "[" + hookPK + "]",
	"tezos.*.authorized_keys":     "[" + hookPK + "]",
	"tezos.*.jwt_users":           "[baker]",
	"tezos.*.allowed_chains":      "[NetXdQprcVkpaWU]",
	"tezos.*.allow":               "{block: }",
}

// context is what a field needs around it to load (a user for jwt_users,
// an address next to the hook's keys).
func context(path string) string {
	switch path {
	case "tezos.*.jwt_users":
		return "server:\n  jwt: " + goodValues["server.jwt"] + "\n"
	}
	return ""
}

// siblings are fields the setting needs next to it.
func siblings(path string) string {
	if path == "tezos.*.allow" {
		// An empty allow is refused only where it would hand the
		// decision to the older fields.
		return "allowed_operations: [block, generic]"
	}
	return ""
}

// nest writes path (with "*" as keyPKH) holding value as block YAML; merge,
// when set, is put into the field's parent mapping as `<<: *merge` instead
// of the field itself.
func nest(path, value, merge string) string {
	parts := strings.Split(strings.ReplaceAll(path, "*", keyPKH), ".")
	var b strings.Builder
	for i, p := range parts {
		indent := strings.Repeat("  ", i)
		if i == len(parts)-1 {
			if sib := siblings(path); sib != "" {
				fmt.Fprintf(&b, "%s%s\n", indent, sib)
			}
			if merge != "" {
				fmt.Fprintf(&b, "%s<<: *%s\n", indent, merge)
			} else {
				fmt.Fprintf(&b, "%s%s: %s\n", indent, p, value)
			}
			break
		}
		fmt.Fprintf(&b, "%s%s:\n", indent, p)
		if p == "policy_hook" && parts[len(parts)-1] != "policy_hook" {
			fmt.Fprintf(&b, "%s  address: http://127.0.0.1:1/policy\n", indent)
		}
	}
	return b.String()
}

// anchors are defined inside a vault's raw config section, which the
// loader keeps for the driver: a place for anchors that is not itself a
// setting.
func anchors(leaf string) string {
	return "vaults:\n  v:\n    driver: mem\n    config:\n" +
		"      - &emptylist []\n      - &emptymap {}\n      - &nestedempty [[], [~]]\n      - &emptystring \"\"\n" +
		"      - &withempty {" + leaf + ": []}\n      - &withnull {" + leaf + ": }\n"
}

// Every restricting setting, present but empty in any way a file can say
// it — null, [], {}, nested empty lists, an alias of an empty node, a merge
// key bringing an empty value, an empty variable (${E:-}), quoted or in a
// list — is refused with its field and line; its non-empty form loads.
func TestRestrictingSettingsPresentButEmpty(t *testing.T) {
	t.Setenv("SIGIL_T_EMPTY", "")
	fields := config.RestrictingFields()
	require.Len(t, goodValues, len(fields), "every restricting setting has a case here")
	empties := []string{"", "~", "null", "[]", "{}", "[[]]", "[[], []]", "[[], [~]]", "[\"\"]",
		"*emptylist", "*emptymap", "*nestedempty", "*emptystring",
		"${SIGIL_T_EMPTY:-}", "\"${SIGIL_T_EMPTY:-}\"", "[\"${SIGIL_T_EMPTY:-}\"]", "[[\"${SIGIL_T_EMPTY:-}\"]]"}
	for _, path := range fields {
		good, ok := goodValues[path]
		require.True(t, ok, "no good value for %s", path)
		leaf := path[strings.LastIndexByte(path, '.')+1:]
		concrete := strings.ReplaceAll(path, "*", keyPKH)
		t.Run(path, func(t *testing.T) {
			y := anchors(leaf) + context(path) + nest(path, good, "")
			_, err := config.Parse([]byte(y), "")
			require.NoError(t, err, "the non-empty form loads:\n%s", y)
			cases := map[string]string{}
			for _, e := range empties {
				cases[e] = anchors(leaf) + context(path) + nest(path, e, "")
			}
			cases["<<: *withempty"] = anchors(leaf) + context(path) + nest(path, "", "withempty")
			cases["<<: *withnull"] = anchors(leaf) + context(path) + nest(path, "", "withnull")
			for name, y := range cases {
				_, err := config.Parse([]byte(y), "")
				if !assert.Error(t, err, "%s: loaded:\n%s", name, y) {
					continue
				}
				assert.Contains(t, err.Error(), concrete, "%s: the error names the field:\n%s", name, y)
				assert.Contains(t, err.Error(), "line ", name)
			}
		})
	}
}

// The issue's own examples: nested empty lists in server.authorized_keys,
// and jwt_users aliased to an empty allowed_chains.
func TestIssueExamplesRefused(t *testing.T) {
	for _, y := range []string{
		"server: {authorized_keys: [[]]}\n",
		"server: {authorized_keys: [[], []]}\n",
		"server:\n  jwt: " + goodValues["server.jwt"] + "\ntezos:\n  " + keyPKH + ":\n    allowed_chains: &nobody []\n    jwt_users: *nobody\n",
	} {
		_, err := config.Parse([]byte(y), "")
		require.Error(t, err, y)
		assert.Contains(t, err.Error(), "present but empty", y)
	}
}

// base_dir present but empty (an empty variable, null, "") is refused: it
// used to fall back to /var/lib/sigil silently. A set-but-empty variable
// without a default is refused wherever it is.
func TestEmptyBaseDirAndVariables(t *testing.T) {
	t.Setenv("SIGIL_STATE", "")
	for _, tc := range []struct{ yaml, want string }{
		{"base_dir: ${SIGIL_STATE}\n", "SIGIL_STATE is set but empty"},
		{"base_dir: $SIGIL_STATE\n", "SIGIL_STATE is set but empty"},
		{"base_dir: ${SIGIL_STATE:-}\n", "base_dir: present but empty"},
		{"base_dir:\n", "base_dir: present but empty"},
		{"base_dir: \"\"\n", "base_dir: present but empty"},
		{"base_dir: ~\n", "base_dir: present but empty"},
		{"server: {address: \"${SIGIL_STATE}\"}\n", "server.address: environment variable SIGIL_STATE is set but empty"},
	} {
		_, err := config.Parse([]byte(tc.yaml), "")
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want, tc.yaml)
		assert.Contains(t, err.Error(), "line 1", tc.yaml)
	}
	// With --base-dir the file's base_dir is still checked (the state
	// directory check compares them).
	_, err := config.Parse([]byte("base_dir: ${SIGIL_STATE}\n"), "/srv/sigil")
	require.Error(t, err)
	c, err := config.Parse([]byte("base_dir: ${SIGIL_STATE:-/srv/state}\n"), "")
	require.NoError(t, err)
	assert.Equal(t, "/srv/state", c.BaseDir)
	assert.Equal(t, "/srv/state", c.FileBaseDir)
	c, err = config.Parse([]byte("base_dir: /srv/file\n"), "/srv/flag")
	require.NoError(t, err)
	assert.Equal(t, "/srv/flag", c.BaseDir)
	assert.Equal(t, "/srv/file", c.FileBaseDir)
	assert.Equal(t, "/srv/flag", c.BaseDirFlag)
}

// A billion-laughs document (558 bytes took 25.7 s and 1.3 GB) is refused
// at once with a clear error; a configuration sharing key groups through
// anchors loads.
func TestAliasAmplificationRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("server:\n  authorized_keys:\n    - &a0 [" + hookPK + "]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "    - &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	_, err := config.Parse([]byte(b.String()), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "YAML aliases expand")

	shared := "server:\n  authorized_keys: &ops [" + hookPK + ", " + hookPK + "]\ntezos:\n"
	for i := range 50 {
		shared += fmt.Sprintf("  %s:\n    authorized_keys: *ops\n", pkhs[i%len(pkhs)])
		if i == len(pkhs)-1 {
			break
		}
	}
	_, err = config.Parse([]byte(shared), "")
	require.NoError(t, err)
}

var pkhs = []string{keyPKH, "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb", "tz4HVR6aty9KwsQFHh81C1G7gBdhxT8kuytm"}

// Two fields on one line: a type error names the field that holds the bad
// value, and never repeats the value (a secret typed into the wrong field
// must not reach the log).
func TestTypeErrorsNameTheFieldAndHideTheValue(t *testing.T) {
	for _, tc := range []struct{ yaml, want, hidden string }{
		{"server: {address: \":1\", max_connections: Sup3rS3cretPassw0rd}\n", "line 1: server.max_connections: cannot unmarshal !!str into int", "Sup3rS3"},
		{"server: {max_connections: 3, read_timeout: Sup3rS3cretPassw0rd}\n", "line 1: server.read_timeout: cannot unmarshal !!str into time.Duration", "Sup3rS3"},
		{"server:\n  jwt:\n    users:\n      baker: {password: \"" + pass1 + "\", secret: \"" + secret1 + "\", jwt_exp: Sup3rS3cretPassw0rd}\n", "line 4: server.jwt.users.baker.jwt_exp: cannot unmarshal", "Sup3rS3"},
		{"server:\n  authorized_keys: edskRtmEwZxRzwd1obV9pJzAoLoxXFWTSHbgqpDBRHx1Ktzo5yVuJ37e2R4nzjLnNbxFU4UiBU1iHzAy52pK5YBRpaFwLbByca\n", "not a public key (not repeated", "edskRtm"},
	} {
		_, err := config.Parse([]byte(tc.yaml), "")
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want)
		assert.NotContains(t, err.Error(), tc.hidden)
	}
}

// The listener limits: defaults (a 3 s header timeout, 128 connections per
// client address) and the per-client cap's range.
func TestListenerLimits(t *testing.T) {
	c, err := config.Parse(nil, "")
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, c.Server.ReadHeaderTimeout)
	assert.Equal(t, 128, c.Server.MaxConnectionsPerClient)
	c, err = config.Parse([]byte("server: {max_connections: 50}\n"), "")
	require.NoError(t, err)
	assert.Equal(t, 50, c.Server.MaxConnectionsPerClient, "never above max_connections")
	for _, y := range []string{"server: {max_connections_per_client: -1}\n", "server: {max_connections: 10, max_connections_per_client: 11}\n"} {
		_, err := config.Parse([]byte(y), "")
		require.Error(t, err, y)
		assert.Contains(t, err.Error(), "server.max_connections_per_client")
	}
}

// Every location setting inside a driver section, present but resolving to
// nothing, is refused naming it, instead of its default (another table,
// collection or directory); left out, or given, it loads.
func TestLocationsPresentButEmpty(t *testing.T) {
	t.Setenv("SIGIL_T_EMPTY", "")
	for _, path := range config.LocationFields() {
		leaf := path[strings.LastIndexByte(path, '.')+1:]
		concrete := strings.ReplaceAll(path, "*", "v")
		for _, empty := range []string{"", "~", "\"\"", "${SIGIL_T_EMPTY:-}", "*blank"} {
			y := "vaults:\n  anchors:\n    driver: mem\n    config: [&blank \"\"]\n" + withDrivers(nest(strings.ReplaceAll(path, "*", "v"), empty, ""))
			if strings.HasPrefix(path, "vaults.") {
				y = strings.Replace(y, "vaults:\n  v:\n", "  v:\n", 1)
			}
			_, err := config.Parse([]byte(y), "")
			if !assert.Error(t, err, "%s = %q loaded:\n%s", path, empty, y) {
				continue
			}
			assert.Contains(t, err.Error(), concrete+": present but empty", y)
		}
		y := withDrivers(nest(strings.ReplaceAll(path, "*", "v"), "somewhere", ""))
		_, err := config.Parse([]byte(y), "")
		assert.NoError(t, err, "%s given (%s):\n%s", path, leaf, y)
	}
}

// withDrivers gives the vault v and the watermark section of y a driver.
func withDrivers(y string) string {
	y = strings.Replace(y, "vaults:\n  v:\n", "vaults:\n  v:\n    driver: x\n", 1)
	return strings.Replace(y, "watermark:\n", "watermark:\n  driver: x\n", 1)
}
