package app

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/config"
)

// TestEveryConfigFieldIsClassified: each setting of the configuration is
// either applied by a reload or named as needing a restart; a field added
// to config.Config (or its server section) and classified nowhere fails
// here.
func TestEveryConfigFieldIsClassified(t *testing.T) {
	known := map[string]bool{"vaults": true} // compared vault by vault
	for _, f := range reloadableFields {
		known[f] = true
	}
	for _, f := range restartOnly {
		require.False(t, known[f.field], "%s is classified twice", f.field)
		known[f.field] = true
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			name := prefix + tag
			if name == "server" {
				walk("server.", typ.Field(i).Type)
				continue
			}
			assert.True(t, known[name], "configuration field %s is neither reloadable nor restart-only", name)
			delete(known, name)
		}
	}
	walk("", reflect.TypeOf(config.Config{}))
	assert.Empty(t, known, "classified settings that the configuration does not have")
}

const reloadBase = `base_dir: /var/lib/sigil-test
server:
  address: 127.0.0.1:6732
  utility_address: 127.0.0.1:9583
vaults:
  cs:
    driver: confidentialspace
    config:
      host: 10.0.0.1
      wip_provider_path: projects/1/wip
      encryption_key_path: projects/1/key
      storage:
        driver: file
        config: /tmp/keys.json
watermark:
  driver: file
tezos:
  tz1burnburnburnburnburnburnburjAYjjX:
    allow:
      block:
`

func TestRestartOnlyChanges(t *testing.T) {
	parse := func(s string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(s), "")
		require.NoError(t, err)
		return c
	}
	base := parse(reloadBase)
	for _, c := range []struct {
		name, from, to string
		want           []string
	}{
		{"a policy", "      block:\n", "      block:\n      attestation:\n", nil},
		{"authorized keys", "  utility_address: 127.0.0.1:9583\n", "  utility_address: 127.0.0.1:9583\n  authorized_keys: edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav\n", nil},
		{"the order and position of sections", "watermark:\n  driver: file\n", "", nil}, // re-added below, at the top
		{"the listener", "127.0.0.1:6732", "127.0.0.1:6733", []string{"server.address"}},
		{"the utility listener", "127.0.0.1:9583", "0.0.0.0:9583", []string{"server.utility_address"}},
		{"a timeout", "  utility_address: 127.0.0.1:9583\n", "  utility_address: 127.0.0.1:9583\n  idle_timeout: 5s\n", []string{"server.idle_timeout"}},
		{"the per-client connection limit", "  utility_address: 127.0.0.1:9583\n", "  utility_address: 127.0.0.1:9583\n  max_connections_per_client: 16\n", []string{"server.max_connections_per_client"}},
		{"the connection limit", "  utility_address: 127.0.0.1:9583\n", "  utility_address: 127.0.0.1:9583\n  max_connections: 2000\n", []string{"server.max_connections"}},
		{"the base directory", "/var/lib/sigil-test", "/var/lib/other", []string{"base_dir"}},
		{"an enclave's host", "10.0.0.1", "10.0.0.2", []string{"vaults.cs.config"}},
		{"a vault's key storage", "/tmp/keys.json", "/tmp/other.json", []string{"vaults.cs.config"}},
		{"a vault's driver", "driver: confidentialspace", "driver: nitro", []string{"vaults.cs.driver"}},
		{"a vault added", "vaults:\n", "vaults:\n  mem:\n    driver: mem\n", []string{"vaults.mem (added)"}},
		{"a vault renamed", "  cs:\n", "  cs2:\n", []string{"vaults.cs (removed)", "vaults.cs2 (added)"}},
		{"the watermark backend", "watermark:\n  driver: file\n", "watermark:\n  driver: mem\n", []string{"watermark"}},
		{"two at once", "127.0.0.1:6732", "127.0.0.1:6733\n  idle_timeout: 5s", []string{"server.address", "server.idle_timeout"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Contains(t, reloadBase, c.from)
			text := strings.Replace(reloadBase, c.from, c.to, 1)
			if c.to == "" {
				text = c.from + text
			}
			got := RestartOnlyChanges(base, parse(text))
			assert.Equal(t, c.want, got)
		})
	}
}
