package app

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
)

// configFormat is the format of every configuration error: FILE:LINE:
// FIELD: problem.
var configFormat = regexp.MustCompile(`^[^:\n]+:[1-9][0-9]*: [^ :\n][^ \n]*: \S`)

// errorsBase is a configuration with every kind of section; each case
// below changes one line of it. Its line numbers are the ones expected.
const errorsBase = `vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      wip_provider_path: p
      encryption_key_path: k
      storage:
        driver: file
        config: /tmp/keys.json
  nitro:
    driver: nitro
    config:
      encryption_key_id: k
      credentials:
        region: eu-west-1
  local:
    driver: mem
    config: []
tezos:
  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:
    allow:
      block:
      attestation:
      generic: [transaction, reveal]
  tz1burnburnburnburnburnburnburjAYjjX:
    allowed_operations: [block, generic]
    allowed_kinds: [transaction, delegation]
watermark:
  driver: file
  config:
    base_dir: /tmp/wm
`

// TestConfigErrorsEverySite: the errors found past the loader (driver
// names, driver sections, policy kinds) are FILE:LINE: FIELD: problem, at
// the misspelt name, with "did you mean" where one is close. Many
// misspellings of each kind of name.
func TestConfigErrorsEverySite(t *testing.T) {
	type tc struct {
		from, to string
		line     int
		field    string
		want     string
	}
	cases := map[string]tc{}
	misspelt := func(prefix, from, field string, line int, names map[string]string) {
		for typo, meant := range names {
			want := "did you mean " + meant + "?"
			if meant == "" {
				want = "known"
			}
			cases[prefix+" "+typo] = tc{from, strings.Replace(from, fieldValue(from), typo, 1), line, field, want}
		}
	}
	misspelt("vault driver", "    driver: confidentialspace", "vaults.cs.driver", 3, map[string]string{
		"confidentalspace": "confidentialspace", "confidential_space": "confidentialspace", "confidential-space": "confidentialspace",
		"ConfidentialSpace": "confidentialspace", "confidentialspce": "confidentialspace", "cofidentialspace": "confidentialspace",
		"nitr": "nitro", "Nitro": "nitro", "niro": "nitro", "fiel": "file", "mme": "mem", "azure": "",
	})
	misspelt("watermark driver", "watermark:\n  driver: file", "watermark.driver", 30, map[string]string{
		"fiel": "file", "flie": "file", "firestor": "firestore", "Firestore": "firestore", "gpc": "gcp", "asw": "aws", "mme": "mem", "redis": "",
	})
	misspelt("storage driver", "        driver: file", "vaults.cs.config.storage.driver", 9, map[string]string{
		"files": "file", "firestroe": "firestore", "dynamo": "dynamodb", "dynamodbb": "dynamodb", "s3": "",
	})
	misspelt("request kind", "      attestation:", "tezos.tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb.allow.attestaton", 24, map[string]string{})
	for typo, meant := range map[string]string{
		"attestaton": "attestation", "atestation": "attestation", "attestations": "attestation", "Attestation": "attestation",
		"preattestaton": "preattestation", "pre_attestation": "preattestation", "attestation-with-dal": "attestation_with_dal",
		"endorsment": "endorsement", "preendorsment": "preendorsement", "packs": "pack", "generc": "generic",
	} {
		cases["request kind "+typo] = tc{"      attestation:", "      " + typo + ":", 24, "tezos.tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb.allow." + typo, "did you mean " + meant + "?"}
	}
	for typo, meant := range map[string]string{
		"transacton": "transaction", "transactions": "transaction", "trasnaction": "transaction", "Transaction": "transaction",
		"reveel": "reveal", "delegaton": "delegation", "origination_": "origination", "ballot:yea": "", "update_consensus_keys": "update_consensus_key",
		"set_deposit_limit": "set_deposits_limit", "smart_rollup_originat": "smart_rollup_originate", "endorsment": "endorsement",
	} {
		want := "did you mean " + meant + "?"
		if meant == "" {
			want = "only ballot takes a sub-kind"
		}
		cases["operation kind "+typo] = tc{"generic: [transaction, reveal]", "generic: [transaction, " + typo + "]", 25, "tezos.tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb.allow.generic[1]", want}
	}
	cases["legacy request kind"] = tc{"[block, generic]", "[block, genric]", 27, "tezos.tz1burnburnburnburnburnburnburjAYjjX.allowed_operations[1]", "did you mean generic?"}
	cases["legacy operation kind"] = tc{"[transaction, delegation]", "[transaction, delegatoin]", 28, "tezos.tz1burnburnburnburnburnburnburjAYjjX.allowed_kinds[1]", "did you mean delegation?"}
	// Driver sections: a misspelt field, at its line.
	for _, c := range []struct{ from, typo, field, meant string }{
		{"      host: 127.0.0.1", "hots", "vaults.cs.config.hots", "host"},
		{"      host: 127.0.0.1", "Host", "vaults.cs.config.Host", "host"},
		{"      wip_provider_path: p", "wip_provider", "vaults.cs.config.wip_provider", "wip_provider_path"},
		{"      encryption_key_path: k", "encryption_keypath", "vaults.cs.config.encryption_keypath", "encryption_key_path"},
		{"      storage:", "storag", "vaults.cs.config.storag", "storage"},
		{"      encryption_key_id: k", "encryption_key", "vaults.nitro.config.encryption_key", "encryption_key_id"},
		{"      credentials:", "credential", "vaults.nitro.config.credential", "credentials"},
		{"        region: eu-west-1", "regoin", "vaults.nitro.config.credentials.regoin", "region"},
		{"    base_dir: /tmp/wm", "basedir", "watermark.config.basedir", "base_dir"},
	} {
		line := lineOf(t, c.from)
		cases["section field "+c.typo] = tc{c.from, strings.Replace(c.from, strings.TrimSpace(strings.Split(c.from, ":")[0]), c.typo, 1), line, c.field, "unknown field (did you mean " + c.meant + "?"}
	}
	// A storage section inside a vault, and the watermark's: fields of
	// their own drivers.
	cases["storage section field"] = tc{"        driver: file\n        config: /tmp/keys.json", "        driver: gcp\n        config:\n          project: p\n          databse: d", 12, "vaults.cs.config.storage.config.databse", "did you mean database?"}
	cases["watermark gcp field"] = tc{"  driver: file\n  config:\n    base_dir: /tmp/wm", "  driver: gcp\n  config:\n    project: p\n    colection: c", 33, "watermark.config.colection", "did you mean collection?"}
	cases["watermark aws field"] = tc{"  driver: file\n  config:\n    base_dir: /tmp/wm", "  driver: aws\n  config:\n    tabel: t", 32, "watermark.config.tabel", "did you mean table?"}
	// A driver's own validation: at its section.
	cases["driver validation"] = tc{"      host: 127.0.0.1\n", "", 4, "vaults.cs.config", "missing host"}
	cases["storage validation"] = tc{"        driver: file\n        config: /tmp/keys.json", "        driver: gcp\n        config:\n          project: p", 10, "vaults.cs.config.storage.config", "missing required field database"}
	cases["storage type"] = tc{"config: /tmp/keys.json", "config: {path: x}", 10, "vaults.cs.config.storage.config", "single path string"}
	cases["mem section type"] = tc{"    config: []", "    config: {a: b}", 19, "vaults.local.config", ""}
	// The enclave client's numeric settings: at the field itself
	// (config.FieldErrorf), for both remote backends.
	cases["connections range"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      connections: 0\n", 6, "vaults.cs.config.connections", "0 is out of range (allowed: 1 to 256)"}
	cases["rpc_timeout range"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      rpc_timeout: 11m\n", 6, "vaults.cs.config.rpc_timeout", "11m0s is out of range (allowed: 1ms to 10m0s)"}
	cases["dial_timeout syntax"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      dial_timeout: soon\n", 6, "vaults.cs.config.dial_timeout", `invalid duration "soon"`}
	// The attested channel's section: at the setting's line.
	cases["attested_channel null"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      attested_channel:\n", 6, "vaults.cs.config.attested_channel", "must be a section"}
	cases["attested_channel field"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      attested_channel:\n        client_key_fle: /k\n", 7, "vaults.cs.config.attested_channel.client_key_fle", "did you mean client_key_file?"}
	cases["attested_channel key file"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      attested_channel:\n        image_digests: [sha256:" + strings.Repeat("0", 64) + "]\n        client_key_file: /nonexistent/enclave-client.key\n", 8, "vaults.cs.config.attested_channel.client_key_file", "no such file"}
	cases["attested_channel digest"] = tc{"      host: 127.0.0.1\n", "      host: 127.0.0.1\n      attested_channel:\n        client_key_file: /k\n        image_digests: [sha256:00]\n", 8, "vaults.cs.config.attested_channel.image_digests[0]", "not an image digest"}
	cases["nitro connections range"] = tc{"      encryption_key_id: k\n", "      encryption_key_id: k\n      connections: 300\n", 15, "vaults.nitro.config.connections", "300 is out of range"}

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(errorsBase, c.from) {
				t.Fatalf("%q is not in the base configuration", c.from)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "sigil.yaml")
			writeFile(t, path, "base_dir: "+filepath.Join(dir, "base")+"\n"+strings.Replace(errorsBase, c.from, c.to, 1))
			err := CheckConfig(Options{ConfigPath: path, StateDirs: &StateDirs{}})
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !configFormat.MatchString(msg) {
				t.Errorf("%s\nis not FILE:LINE: FIELD: problem", msg)
			}
			// +1: the base_dir line in front.
			prefix := path + ":" + strconv.Itoa(c.line+1) + ": " + c.field + ": "
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("%s\nwant the prefix %s", msg, prefix)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("%s\nwant %q in it", msg, c.want)
			}
		})
	}
	// The base itself is valid.
	dir := t.TempDir()
	path := filepath.Join(dir, "sigil.yaml")
	writeFile(t, path, "base_dir: "+filepath.Join(dir, "base")+"\n"+errorsBase)
	if err := CheckConfig(Options{ConfigPath: path, StateDirs: &StateDirs{}}); err != nil {
		t.Fatal(err)
	}
}

// fieldValue is the value of a "key: value" line.
func fieldValue(line string) string {
	_, v, _ := strings.Cut(line, ": ")
	return strings.TrimSpace(v)
}

// lineOf is the line of text in errorsBase.
func lineOf(t *testing.T, text string) int {
	i := strings.Index(errorsBase, text)
	if i < 0 {
		t.Fatalf("%q is not in the base configuration", text)
	}
	return strings.Count(errorsBase[:i], "\n") + 1
}

// secretKey is a Tezos secret key (the sandbox's bootstrap1): wherever it
// is written, no configuration error repeats it.
const secretKey = "edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbq"

// FuzzConfigErrorsNeverRepeatSecrets: whatever the configuration, the
// error that refuses it (from the loader, a driver, a policy) repeats
// neither a string that looks like a Tezos secret key, wherever it is
// written (SECRET in the input stands for one), nor the value of a secret
// field (password, secret, secret_access_key, session_token, passphrase,
// application_credentials_data), and is in the format.
func FuzzConfigErrorsNeverRepeatSecrets(f *testing.F) {
	for _, s := range []string{
		errorsBase,
		strings.Replace(errorsBase, "config: []", "config: [SECRET]", 1),
		strings.Replace(errorsBase, "driver: mem", "driver: SECRET", 1),
		strings.Replace(errorsBase, "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:", "SECRET:", 1),
		strings.Replace(errorsBase, "      attestation:", "      SECRET:", 1),
		strings.Replace(errorsBase, "[transaction, reveal]", "[transaction, SECRET]", 1),
		strings.Replace(errorsBase, "        region: eu-west-1", "        region: eu-west-1\n        secret_access_key: Canary-Secret-Access-Key-0123\n        acces_key_id: x", 1),
		strings.Replace(errorsBase, "    driver: mem\n    config: []", "    driver: file\n    config: {file: /nonexistent, passphrase: Canary-Passphrase-0123, fiel: x}", 1),
		"server:\n  jwt:\n    users:\n      baker:\n        password: Canary-Password-0123\n        secret: short\n",
		"vaults:\n  v:\n    driver: confidentialspace\n    config: {host: SECRET}\n",
		"watermark:\n  driver: gcp\n  config: {project: p, application_credentials_data: Canary-Credentials-0123, colection: x}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		text = strings.ReplaceAll(text, "SECRET", secretKey)
		cfg, err := config.Parse([]byte(text), "")
		if err == nil {
			cfg.File = "sigil.yaml"
			err = checkConfig(cfg, Options{StateDirs: &StateDirs{}})
		}
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.Contains(msg, secretKey[:16]) {
			t.Fatalf("the error repeats a secret key:\n%s", msg)
		}
		for _, v := range secretValues(text) {
			if strings.Contains(msg, v) {
				t.Fatalf("the error repeats the secret %q:\n%s", v, msg)
			}
		}
	})
}

// secretValues returns the values of secret fields in text that are long
// enough to be told apart and appear once in it (a value written elsewhere
// too, e.g. as a name, may be repeated there).
func secretValues(text string) []string {
	var doc yaml.Node
	if yaml.Unmarshal([]byte(text), &doc) != nil {
		return nil
	}
	var out []string
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if n == nil || depth > 32 {
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				switch k.Value {
				case "password", "secret", "secret_access_key", "session_token", "passphrase", "application_credentials_data":
					if v.Kind == yaml.ScalarNode && len(v.Value) >= 12 && strings.Count(text, v.Value) == 1 {
						out = append(out, v.Value)
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(&doc, 0)
	return out
}
