package config_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/confidentialspace"
	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/securechannel"
)

// FuzzParse: the loader never panics, never returns both a configuration
// and an error, and its errors stay short whatever the input (inputs are
// echoed shortened).
func FuzzParse(f *testing.F) {
	f.Add([]byte(signatoryExample))
	f.Add([]byte("server:\n  address: ${SIGIL_FUZZ_UNSET:-:1}\n  authorized_keys: [\"${X}\"]\n"))
	f.Add([]byte("a: &x {b: *x}\n---\nc: 1\n"))
	f.Add([]byte("vaults:\n  v:\n    driver: d\n    config: {k: $$, l: ${A:-${B:-c}}}\n"))
	f.Add([]byte("tezos:\n  tz1burnburnburnburnburnburnburjAYjjX:\n    authorized_keys: ~\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "")
		if err != nil {
			if c != nil {
				t.Fatal("both a configuration and an error")
			}
			if n := len(err.Error()); n > 4096 {
				t.Fatalf("error of %d bytes", n)
			}
			return
		}
		if c.BaseDir == "" || c.Server.Address == "" {
			t.Fatal("defaults not applied")
		}
		for _, v := range c.Vaults {
			if d := v.Decoder(); d != nil {
				var anyV map[string]any
				_ = d(&anyV)
			}
		}
	})
}

// FuzzAuthenticationNeverSilentlyOff asserts the invariant of the
// restricting settings: a configuration that loads has every check the file
// asks for switched on. The file asks for a check when it has the field at
// all — however nested, aliased, merged or emptied by a variable — and the
// oracle that says so is yaml.v3's own generic decoding of the text (which
// resolves aliases and merge keys independently of the loader's node walk).
// A confidentialspace vault whose section has attested_channel and that
// loads (its own parser, confidentialspace.ParseConfig) dials the attested
// channel, with a key file and an image digest allow-list.
func FuzzAuthenticationNeverSilentlyOff(f *testing.F) {
	f.Setenv("SIGIL_FUZZ_EMPTY", "")
	f.Setenv("SIGIL_FUZZ_KEY", hookPK)
	clientKey := filepath.Join(f.TempDir(), "client.key")
	if _, err := securechannel.GenerateClientKey(clientKey); err != nil {
		f.Fatal(err)
	}
	f.Setenv("SIGIL_FUZZ_CLIENT_KEY", clientKey)
	cs := "vaults:\n  cs:\n    driver: confidentialspace\n    config:\n      host: h\n      wip_provider_path: w\n      encryption_key_path: k\n"
	ac := "{client_key_file: ${SIGIL_FUZZ_CLIENT_KEY}, image_digests: [" + attestationtest.Digest + "]}"
	for _, s := range []string{
		cs + "      attested_channel: " + ac + "\n",
		cs + "      attested_channel:\n",
		cs + "      attested_channel: ${SIGIL_FUZZ_EMPTY:-}\n",
		cs + "      attested_channel: {}\n",
		cs + "      <<: {attested_channel: " + ac + "}\n",
		cs + "      attested_channel: &a " + ac + "\n  other:\n    driver: confidentialspace\n    config: {host: h, wip_provider_path: w, encryption_key_path: k, attested_channel: *a}\n",
		cs + "      attested_channel: {client_key_file: ${SIGIL_FUZZ_CLIENT_KEY}, image_digests: [\"${SIGIL_FUZZ_EMPTY:-}\"]}\n",
	} {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"server: {authorized_keys: [[]]}\n",
		"server: {authorized_keys: [[], []]}\n",
		"server: {authorized_keys: [[\"${SIGIL_FUZZ_KEY}\"]]}\n",
		"server:\n  authorized_keys: ${SIGIL_FUZZ_EMPTY:-}\n",
		"server:\n  authorized_keys: ${SIGIL_FUZZ_EMPTY}\n",
		"server:\n  <<: {authorized_keys: []}\n",
		"server:\n  jwt: {users: {}}\n",
		"server:\n  jwt: " + goodValues["server.jwt"] + "\ntezos:\n  " + keyPKH + ":\n    allowed_chains: &nobody []\n    jwt_users: *nobody\n",
		"server:\n  jwt: " + goodValues["server.jwt"] + "\ntezos:\n  " + keyPKH + ":\n    jwt_users: [baker]\n    allowed_chains: [NetXdQprcVkpaWU]\n",
		"tezos:\n  " + keyPKH + ":\n    authorized_keys: [\"\", \"${SIGIL_FUZZ_EMPTY:-}\"]\n",
		"tezos:\n  " + keyPKH + ": &p\n    authorized_keys: [" + hookPK + "]\n  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb: *p\n",
		"policy_hook: {address: http://127.0.0.1:1/, authorized_keys: [[~]]}\n",
		"policy_hook: {}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "")
		if err != nil {
			return
		}
		var doc map[string]any
		if yaml.Unmarshal(data, &doc) != nil {
			return // the oracle cannot read it (e.g. its own alias guard)
		}
		srv := mapping(doc["server"])
		if has(srv, "authorized_keys") && len(c.Server.AuthorizedKeys) == 0 {
			t.Fatalf("server.authorized_keys is in the file, yet authentication is off:\n%s", data)
		}
		if has(srv, "jwt") && (c.Server.JWT == nil || len(c.Server.JWT.Users) == 0) {
			t.Fatalf("server.jwt is in the file, yet no user is configured:\n%s", data)
		}
		if has(doc, "policy_hook") {
			if c.PolicyHook == nil || c.PolicyHook.Address == "" {
				t.Fatalf("policy_hook is in the file, yet no hook is called:\n%s", data)
			}
			if has(mapping(doc["policy_hook"]), "authorized_keys") && len(c.PolicyHook.AuthorizedKeys) == 0 {
				t.Fatalf("policy_hook.authorized_keys is in the file, yet the hook's replies are not authenticated:\n%s", data)
			}
		}
		for name, v := range mapping(doc["vaults"]) {
			if !has(mapping(mapping(v)["config"]), "attested_channel") {
				continue
			}
			vc := c.Vaults[name]
			if vc == nil || vc.Driver != "confidentialspace" {
				continue
			}
			cfg, err := confidentialspace.ParseConfig(vc.Decoder())
			if err != nil {
				continue
			}
			if a := cfg.AttestedChannel; a == nil || a.ClientKeyFile == "" || len(a.ImageDigests) == 0 {
				t.Fatalf("vaults.%s.config.attested_channel is in the file, yet the vault would dial without it (%+v):\n%s", name, a, data)
			}
		}
		for k, v := range mapping(doc["tezos"]) {
			pol := mapping(v)
			p := c.Tezos[k]
			for _, field := range []string{"authorized_keys", "jwt_users", "allowed_chains"} {
				if !has(pol, field) {
					continue
				}
				if p == nil {
					t.Fatalf("tezos.%s.%s is in the file, yet the key has no policy:\n%s", k, field, data)
				}
				n := map[string]int{"authorized_keys": len(p.AuthorizedKeys), "jwt_users": len(p.JWTUsers), "allowed_chains": len(p.AllowedChains)}[field]
				if n == 0 {
					t.Fatalf("tezos.%s.%s is in the file, yet it restricts nothing:\n%s", k, field, data)
				}
			}
		}
	})
}

// mapping returns v as a string-keyed map (nil when it is not a mapping).
func mapping(v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[fmt.Sprint(k)] = e
		}
		return out
	}
	return nil
}

func has(m map[string]any, key string) bool {
	_, ok := m[key]
	return ok
}
