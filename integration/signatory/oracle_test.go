package signatory_test

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file is the oracle: what Signatory allows, computed from its rules
// (pkg/signatory/signatory.go PreparePolicy, fetchPolicyOrDefault and
// matchFilter; pkg/config; gotez's request and operation kind names),
// independently of Sigil's configuration and policy code. It reads the YAML
// with its own lax decoding, as Signatory's yaml.v3 Unmarshal does (unknown
// fields ignored).

// oracleFile is the part of a configuration file the oracle reads.
type oracleFile struct {
	Server struct {
		AuthorizedKeys yaml.Node `yaml:"authorized_keys"`
	} `yaml:"server"`
	Tezos map[string]*oraclePolicy `yaml:"tezos"`
}

type oraclePolicy struct {
	Allow             map[string][]string `yaml:"allow"`
	AllowedOperations []string            `yaml:"allowed_operations"`
	AllowedKinds      []string            `yaml:"allowed_kinds"`
	AuthorizedKeys    yaml.Node           `yaml:"authorized_keys"`
	AllowedChains     []string            `yaml:"allowed_chains"`
}

// sigPolicy is a prepared Signatory policy (PublicKeyPolicy).
type sigPolicy struct {
	requests   []string // AllowedRequests
	ops        []string // AllowedOps
	authorized []string // client public keys (base58), nil when not set
	chains     []string
}

// signatoryDefault is the policy of a key listed with no body: Signatory's
// defaultPolicy.
var signatoryDefault = sigPolicy{requests: []string{"block", "preattestation", "attestation"}}

// fixRequest is Signatory's fixupRequests: the older request kind names.
func fixRequest(s string) string {
	switch s {
	case "endorsement":
		return "attestation"
	case "preendorsement":
		return "preattestation"
	}
	return s
}

// fixOp is PreparePolicy's renaming of operation kinds for protocols since
// Oxford.
func fixOp(s string) string {
	switch s {
	case "endorsement":
		return "attestation"
	case "preendorsement":
		return "preattestation"
	case "double_endorsement_evidence":
		return "double_attestation_evidence"
	case "double_preendorsement_evidence":
		return "double_preattestation_evidence"
	}
	return s
}

// prepare is Signatory's PreparePolicy for one key: `allow` wins; the older
// allowed_operations / allowed_kinds are read only without it.
func prepare(p *oraclePolicy) sigPolicy {
	if p == nil {
		return signatoryDefault
	}
	var out sigPolicy
	switch {
	case p.Allow != nil:
		for req := range p.Allow {
			out.requests = append(out.requests, fixRequest(req))
		}
		if ops, ok := p.Allow["generic"]; ok {
			out.ops = append([]string{}, ops...)
		}
	case p.AllowedKinds != nil || p.AllowedOperations != nil:
		for _, r := range p.AllowedOperations {
			out.requests = append(out.requests, fixRequest(r))
		}
		out.ops = append(out.ops, p.AllowedKinds...)
	}
	for i := range out.ops {
		out.ops[i] = fixOp(out.ops[i])
	}
	sort.Strings(out.requests)
	sort.Strings(out.ops)
	if p.AuthorizedKeys.Kind != 0 {
		out.authorized = flattenKeys(&p.AuthorizedKeys)
	}
	out.chains = p.AllowedChains
	return out
}

// flattenKeys reads an authorized_keys value as Signatory's AuthorizedKeys
// does: one key, or a list whose items may themselves be lists.
func flattenKeys(n *yaml.Node) []string {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []string{strings.TrimSpace(n.Value)}
	case yaml.SequenceNode:
		out := []string{}
		for _, c := range n.Content {
			out = append(out, flattenKeys(c)...)
		}
		return out
	}
	return nil
}

// allows is Signatory's matchFilter (request kind, then every operation of
// a generic request: a ballot is allowed by `ballot` or `ballot:<vote>`)
// plus allowed_chains for requests that carry a chain.
func (p sigPolicy) allows(m message) bool {
	if !slices.Contains(p.requests, m.kind) {
		return false
	}
	if m.kind == "generic" {
		for i, op := range m.ops {
			if op == "ballot" && slices.Contains(p.ops, "ballot:"+m.ballots[i]) {
				continue
			}
			if !slices.Contains(p.ops, op) {
				return false
			}
		}
	}
	if len(p.chains) > 0 && m.chain != "" && !slices.Contains(p.chains, m.chain) {
		return false
	}
	return true
}

// oracleConfig is a configuration as the oracle reads it.
type oracleConfig struct {
	server   []string // server-wide authorized keys
	policies map[string]sigPolicy
}

// readOracle parses configuration text laxly, expanding ${VAR} from the
// environment first as Signatory does.
func readOracle(data []byte) (*oracleConfig, error) {
	var f oracleFile
	if err := yaml.Unmarshal([]byte(os.ExpandEnv(string(data))), &f); err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	out := &oracleConfig{policies: map[string]sigPolicy{}}
	if f.Server.AuthorizedKeys.Kind != 0 {
		out.server = flattenKeys(&f.Server.AuthorizedKeys)
	}
	for pkh, p := range f.Tezos {
		out.policies[pkh] = prepare(p)
	}
	return out, nil
}

// client returns a client key (base58) that Signatory would let sign for a
// key with policy p: in the server list when there is one, and in the key's
// own list when it has one. ok is false when no key is in both lists; when
// no list is set at all, need is false.
func (c *oracleConfig) client(p sigPolicy) (key string, need, ok bool) {
	switch {
	case len(c.server) == 0 && p.authorized == nil:
		return "", false, true
	case len(c.server) == 0:
		if len(p.authorized) == 0 {
			return "", true, false
		}
		return p.authorized[0], true, true
	case p.authorized == nil:
		return c.server[0], true, true
	}
	for _, k := range c.server {
		if slices.Contains(p.authorized, k) {
			return k, true, true
		}
	}
	return c.server[0], true, false
}
