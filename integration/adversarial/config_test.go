package adversarial

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Issue 18, config semantics on the resolved value. `authorized_keys: []`
// was refused, but `server: {authorized_keys: [[]]}` (or `[[], []]`)
// started with authentication off (GET /authorized_keys {}, an
// unauthenticated sign 200), and `jwt_users: *nobody` aliased to
// `allowed_chains: &nobody []` let any JWT user sign on any chain. Each is
// now refused at start, naming the field and its line.
func TestRestrictingListsResolvingEmptyRefused(t *testing.T) {
	e := newEnv(t)
	const pkh = "tz1burnburnburnburnburnburnburjAYjjX"
	const jwt = `  jwt:
    users:
      baker:
        password: "Operat0r-Passw0rd!"
        secret: "Operat0r#Secret-0123456789abcdefgh"
`
	for _, tc := range []struct{ name, yaml, want string }{
		{"nested empty list", "server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n  authorized_keys: [[]]\n", "server.authorized_keys: present but empty"},
		{"two nested empty lists", "server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n  authorized_keys: [[], []]\n", "server.authorized_keys: present but empty"},
		{"jwt_users aliased to an empty list", "server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n" + jwt +
			"tezos:\n  " + pkh + ":\n    allowed_chains: &nobody []\n    jwt_users: *nobody\n", "tezos." + pkh + ".jwt_users: present but empty"},
		{"jwt_users aliased, chains set", "server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n" + jwt +
			"tezos:\n  " + pkh + ":\n    allowed_operations: &nobody []\n    jwt_users: *nobody\n", "tezos." + pkh + ".jwt_users: present but empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := e.refuses(t, e.writeConfig(tc.yaml))
			assert.Contains(t, out, tc.want)
			assert.Regexp(t, `[^:\s]+:[0-9]+: `+regexp.QuoteMeta(tc.want), out, "FILE:LINE: FIELD: problem")
		})
	}
}

// `base_dir: ${SIGIL_STATE}` with SIGIL_STATE set but empty silently fell
// back to /var/lib/sigil (fresh watermarks). It is refused, naming the
// variable.
func TestSetButEmptyStateVariableRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.writeConfig("")
	replaceInFile(t, cfg, "base_dir: "+e.dir, "base_dir: ${SIGIL_STATE}")
	out := e.refusesToStart(cfg, "SIGIL_STATE=")
	assert.Contains(t, out, "SIGIL_STATE is set but empty")
	assert.Contains(t, out, "base_dir")
}

// A 558-byte configuration whose aliases in authorized_keys expand to
// millions of keys took 25.7 s and 1.3 GB to load; it is refused at once.
func TestAliasBombRefused(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("server:\n  authorized_keys:\n    - &a [edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav]\n")
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g"} { // six levels of 16: 16^6 keys, within the nesting limit
		fmt.Fprintf(&b, "    - &%s [%s]\n", name, strings.TrimSuffix(strings.Repeat("*"+prev+",", 16), ","))
		prev = name
	}
	bomb := b.String()
	t.Logf("the alias bomb is %d bytes", len(bomb))
	out := e.refusesToStart(e.writeConfig(bomb + "  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n"))
	assert.Contains(t, out, "YAML aliases expand")
}

// Two fields on one line: the type error named the wrong one (the line's
// first), and yaml.v3 repeated the first characters of the value — a
// password typed into the wrong field reached the log. The error now names
// the right field and repeats nothing of the value.
func TestConfigTypeErrorNamesTheFieldNotTheValue(t *testing.T) {
	e := newEnv(t)
	out := e.refusesToStart(e.writeConfig("server: {address: \"127.0.0.1:0\", utility_address: \"127.0.0.1:0\", max_connections: Operat0r-Passw0rd!}\n"))
	assert.Contains(t, out, "server.max_connections")
	assert.NotContains(t, out, "server.address:")
	assert.NotContains(t, out, "Operat0")
}
