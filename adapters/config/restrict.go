package config

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// A restricting setting is one whose presence narrows who or what may sign
// (authorized_keys, jwt_users, allowed_chains, the policy kinds) or names
// where state lives (base_dir, checked where it is read). Such a setting that is present in the file
// but resolves to nothing (after YAML aliases, merge keys, nested lists and
// ${VAR} expansion) would silently switch its check off, or move the state:
// an empty authorized_keys means "no authentication", an empty jwt_users
// "any user", an empty allowed_chains "any chain". Every one is therefore
// checked here, on the decoded value the signer will use, by one rule:
// present ⇒ not empty. Leave a field out to run without it.
type restriction struct {
	// path is the field's path; "*" stands for any key of a mapping (the
	// key addresses under tezos:).
	path string
	// size reports how many entries the decoded value has, and how many of
	// them are blank (an empty string, e.g. an empty variable in a list);
	// key is the mapping key "*" matched ("" when the path has none).
	size func(c *Config, key string) (n, blank int)
	// hint says what to do instead.
	hint string
}

const (
	keysHint     = "list at least one public key, or remove the field to accept unauthenticated requests"
	presentEmpty = "present but empty (after resolving aliases, nested lists and variables)"
)

func policy(c *Config, pkh string) *TezosPolicy {
	if p := c.Tezos[pkh]; p != nil {
		return p
	}
	return &TezosPolicy{}
}

// strs sizes a list of strings.
func strs(l []string) (n, blank int) {
	for _, s := range l {
		if strings.TrimSpace(s) == "" {
			blank++
		}
	}
	return len(l), blank
}

func count[T any](l []T) (int, int) { return len(l), 0 }

func present(b bool) (int, int) {
	if b {
		return 1, 0
	}
	return 0, 0
}

// restrictions is the one table of restricting settings.
var restrictions = []restriction{
	{"server.authorized_keys", func(c *Config, _ string) (int, int) { return count(c.Server.AuthorizedKeys) }, keysHint},
	{"server.jwt.users", func(c *Config, _ string) (int, int) {
		return present(c.Server.JWT != nil && len(c.Server.JWT.Users) > 0)
	},
		"configure at least one user, or remove server.jwt"},
	{"server.jwt", func(c *Config, _ string) (int, int) {
		return present(c.Server.JWT != nil && len(c.Server.JWT.Users) > 0)
	},
		"configure users, or remove it to run without JWT authentication"},
	{"policy_hook", func(c *Config, _ string) (int, int) {
		h := c.PolicyHook
		return present(h != nil && (h.Address != "" || len(h.AuthorizedKeys) > 0 || h.Timeout != 0))
	}, "set its address, or remove it to sign without a policy hook"},
	{"policy_hook.authorized_keys", func(c *Config, _ string) (int, int) {
		if c.PolicyHook == nil {
			return 0, 0
		}
		return count(c.PolicyHook.AuthorizedKeys)
	}, "list the keys that sign the hook's replies, or remove the field to trust unsigned replies"},
	{"tezos.*.authorized_keys", func(c *Config, k string) (int, int) { return count(policy(c, k).AuthorizedKeys) }, keysHint},
	{"tezos.*.jwt_users", func(c *Config, k string) (int, int) { return strs(policy(c, k).JWTUsers) },
		"list at least one server.jwt user, or remove the field to let any user sign"},
	{"tezos.*.allowed_chains", func(c *Config, k string) (int, int) { return strs(policy(c, k).AllowedChains) },
		"list at least one chain id, or remove the field to allow every chain"},
	// An empty allow on its own is Signatory's "this key may sign
	// nothing" (its own test configurations use it) and loads; next to
	// allowed_operations or allowed_kinds it would hand the decision to
	// those older fields (allow wins only when it is not empty), a
	// silent widening.
	{"tezos.*.allow", func(c *Config, k string) (int, int) {
		p := policy(c, k)
		if len(p.AllowedOperations) == 0 && len(p.AllowedKinds) == 0 {
			return 1, 0
		}
		return count(keysOf(p.Allow))
	}, "an empty allow hands the policy to allowed_operations/allowed_kinds; list the request kinds under allow, or remove allow"},
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// RestrictingFields lists the paths of the restricting settings (tests,
// docs).
func RestrictingFields() []string {
	out := make([]string, len(restrictions))
	for i, r := range restrictions {
		out[i] = r.path
	}
	return out
}

// checkRestrictions applies the rule to every restricting setting present
// in the document root: it must not decode to an empty value in c. The
// error names the field and its line.
func checkRestrictions(root *yaml.Node, c *Config) error {
	for _, r := range restrictions {
		for _, m := range find(root, strings.Split(r.path, "."), "") {
			n, blank := r.size(c, m.key)
			field := strings.Replace(r.path, "*", m.key, 1)
			if n == blank {
				return errorAt(m.line, field, "%s; %s", presentEmpty, r.hint)
			}
			if blank > 0 {
				return errorAt(m.line, field, "holds an empty entry (an empty string, or a variable expanding to one); remove it")
			}
		}
	}
	return nil
}

// locations are the settings that say where state lives, inside the raw
// driver sections: present but resolving to nothing (null, "", an empty
// variable), each would silently fall back to its default — another table,
// collection, project, region or directory, that is other (or no)
// watermarks and keys. The drivers decode these sections themselves, so
// the rule is checked here on the expanded nodes.
// (A section itself left empty, `config:` with nothing under it, is
// Signatory's "defaults" and loads; the file key storage's one-string
// section refuses an empty path itself.)
var locations = []string{
	"watermark.config.base_dir", "watermark.config.table", "watermark.config.collection",
	"watermark.config.project", "watermark.config.database", "watermark.config.region",
	"vaults.*.config.file",
	"vaults.*.config.storage.config.table", "vaults.*.config.storage.config.collection",
	"vaults.*.config.storage.config.project", "vaults.*.config.storage.config.database",
	"vaults.*.config.storage.config.region",
}

// LocationFields lists the paths of the location settings (tests, docs).
func LocationFields() []string { return append([]string(nil), locations...) }

// checkLocations refuses a location setting that is present but blank.
func checkLocations(root *yaml.Node) error {
	for _, path := range locations {
		for _, m := range findNodes(root, strings.Split(path, "."), "") {
			n := resolve(m.value)
			if n == nil || n.Kind != yaml.ScalarNode {
				continue // a mapping or list: the driver checks its shape
			}
			if strings.TrimSpace(n.Value) == "" || n.ShortTag() == "!!null" {
				return errorAt(m.line, strings.Replace(path, "*", m.key, 1), "present but empty (after expanding variables); give it, or remove it for the default")
			}
		}
	}
	return nil
}

// nodeMatch is one occurrence of a path, with its value.
type nodeMatch struct {
	match
	value *yaml.Node
}

// findNodes is find returning the values too.
func findNodes(n *yaml.Node, path []string, key string) []nodeMatch {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode || len(path) == 0 {
		return nil
	}
	var out []nodeMatch
	for _, p := range pairs(n) {
		if path[0] != "*" && p.key != path[0] {
			continue
		}
		k := key
		if path[0] == "*" {
			k = p.key
		}
		if len(path) == 1 {
			out = append(out, nodeMatch{match{key: k, line: p.keyNode.Line}, p.value})
			continue
		}
		out = append(out, findNodes(p.value, path[1:], k)...)
	}
	return out
}

// match is one occurrence of a path in the document.
type match struct {
	key  string // what "*" matched
	line int    // the line of the field's key
}

// find returns every occurrence of path under n, following aliases and
// merge keys as the decoder does.
func find(n *yaml.Node, path []string, key string) []match {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode || len(path) == 0 {
		return nil
	}
	var out []match
	for _, p := range pairs(n) {
		if path[0] != "*" && p.key != path[0] {
			continue
		}
		k := key
		if path[0] == "*" {
			k = p.key
		}
		if len(path) == 1 {
			out = append(out, match{key: k, line: p.keyNode.Line})
			continue
		}
		out = append(out, find(p.value, path[1:], k)...)
	}
	return out
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

// pair is one key and value of a mapping.
type pair struct {
	key            string
	keyNode, value *yaml.Node
}

// pairs returns the entries of mapping n as the decoder sees them: its own
// keys (aliases resolved), then the entries merged in with `<<` that it does
// not override.
func pairs(n *yaml.Node) []pair {
	return mergedPairs(resolve(n), 0)
}

func mergedPairs(n *yaml.Node, depth int) []pair {
	if n == nil || n.Kind != yaml.MappingNode || depth > 16 {
		return nil
	}
	var own []pair
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			v := resolve(n.Content[i+1])
			if v != nil && v.Kind == yaml.SequenceNode {
				merges = append(merges, v.Content...)
			} else {
				merges = append(merges, v)
			}
			continue
		}
		own = append(own, pair{key: k.Value, keyNode: k, value: n.Content[i+1]})
	}
	seen := make(map[string]bool, len(own))
	for _, p := range own {
		seen[p.key] = true
	}
	for _, m := range merges {
		for _, p := range mergedPairs(resolve(m), depth+1) {
			if !seen[p.key] {
				seen[p.key] = true
				own = append(own, p)
			}
		}
	}
	return own
}

// MaxAliasNodes bounds how many nodes YAML aliases may add to a document
// once expanded. A configuration that shares a few key groups through
// anchors adds hundreds; a "billion laughs" document of a few hundred bytes
// adds billions (one took 25.7 s and 1.3 GB to load before this bound).
const MaxAliasNodes = 100_000

// checkAliasBudget refuses a document whose aliases, expanded, would add
// more than MaxAliasNodes nodes to it.
func checkAliasBudget(doc *yaml.Node) error {
	memo := map[*yaml.Node]int{}
	own := 0
	var ownCount func(n *yaml.Node)
	ownCount = func(n *yaml.Node) {
		own++
		if n.Kind != yaml.AliasNode {
			for _, c := range n.Content {
				ownCount(c)
			}
		}
	}
	ownCount(doc)
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if n == nil {
			return 0
		}
		if v, ok := memo[n]; ok {
			return v
		}
		if depth > 10_000 {
			return MaxAliasNodes + own + 1
		}
		memo[n] = MaxAliasNodes + own + 1 // a cycle counts as too many
		total := 1
		if n.Kind == yaml.AliasNode {
			total += size(n.Alias, depth+1)
		} else {
			for _, c := range n.Content {
				total += size(c, depth+1)
				if total > MaxAliasNodes+own {
					break
				}
			}
		}
		memo[n] = total
		return total
	}
	if expanded := size(doc, 0); expanded-own > MaxAliasNodes {
		return errorAt(0, "", "YAML aliases expand this %d-node document by more than %d nodes: refused (an alias bomb, or anchors reused far more than a configuration needs; write the values out)", own, MaxAliasNodes)
	}
	return nil
}
