package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/policy"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/suggest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// MaxPolicySize bounds the policy's text. A Workload Identity provider's
// condition, where the policy is pinned (see docs/security.md), holds at
// most 4,096 characters in all.
const MaxPolicySize = 4096

// ConfigError is a problem with the guard's policy text: Field says where
// (keys.tz1….allow.generic[1], key_types.tz4.allowed_chains[0]), Msg what.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func configErr(field, format string, args ...any) error {
	ce := &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	return &domain.Error{Kind: domain.KindInvalid, Msg: ce.Error(), Err: ce}
}

// Field names of the policy.
const (
	fieldKeys         = "keys"
	fieldKeyTypes     = "key_types"
	fieldAllow        = "allow"
	fieldChains       = "allowed_chains"
	fieldDestinations = "transaction_destinations"
)

var (
	topFields  = []string{fieldKeys, fieldKeyTypes}
	ruleFields = []string{fieldAllow, fieldChains, fieldDestinations}
	typeNames  = []string{"tz1", "tz2", "tz3", "tz4"}
)

// ParseRules reads the guard's policy: one JSON object,
//
//	{"keys":      {"tz1…": RULE, …},
//	 "key_types": {"tz4": RULE, …}}
//	RULE = {"allow": {"block": [], "preattestation": [], "attestation": [],
//	                  "generic": ["transaction", "reveal", …]},
//	        "allowed_chains": ["NetXdQprcVkpaWU"],
//	        "transaction_destinations": ["tz1…", "KT1…"]}
//
// allow is required and means what the daemon's `allow` means (request kinds,
// then the operation kinds allowed in a generic request, with Signatory's
// names; older names are folded into the current ones); allowed_chains and
// transaction_destinations are optional. A key's own rule wins over its
// type's. Parsing is strict: at most MaxPolicySize bytes, no unknown or
// repeated field, no unknown kind (with the closest known names), no name
// that would match nothing, addresses and chain ids with valid checksums,
// nothing after the object, at least one rule. Every error is a
// domain.KindInvalid error wrapping a *ConfigError that names the field.
func ParseRules(data []byte) (*Rules, error) {
	if len(data) > MaxPolicySize {
		return nil, configErr("", "the policy is %d bytes, more than %d", len(data), MaxPolicySize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, configErr("", "the policy is empty")
	}
	p := &parser{d: json.NewDecoder(bytes.NewReader(data))}
	rs := &Rules{Keys: map[tezos.PublicKeyHash]*Rule{}, Types: map[tezos.KeyType]*Rule{}}
	err := p.object("", "the policy", func(name, path string) error {
		switch name {
		case fieldKeys:
			return p.object(path, "keys (address → rule)", func(addr, path string) error {
				pkh, err := tezos.ParsePublicKeyHash(addr)
				if err != nil {
					return configErr(path, "not a key address (tz1…, tz2…, tz3…, tz4…) with a valid checksum")
				}
				r, err := p.rule(path)
				rs.Keys[pkh] = r
				return err
			})
		case fieldKeyTypes:
			return p.object(path, "key_types (tz1…tz4 → rule)", func(name, path string) error {
				i := slices.Index(typeNames, name)
				if i < 0 {
					return configErr(path, "unknown key type%s", suggest.Hint(name, typeNames, "want tz1, tz2, tz3 or tz4"))
				}
				r, err := p.rule(path)
				rs.Types[tezos.KeyTypes[i]] = r
				return err
			})
		}
		return unknownField(path, name, topFields)
	})
	if err != nil {
		return nil, err
	}
	if _, err := p.d.Token(); !errors.Is(err, io.EOF) {
		return nil, configErr("", "unexpected data after the policy object (at byte %d)", p.d.InputOffset())
	}
	if len(rs.Keys) == 0 && len(rs.Types) == 0 {
		return nil, configErr("", "the policy has no rule (neither keys nor key_types): the enclave would sign nothing")
	}
	return rs, nil
}

// unknownField is the error of a field name no object of this kind has.
func unknownField(path, name string, known []string) error {
	return configErr(path, "unknown field%s", suggest.Hint(name, known, "known: "+strings.Join(known, ", ")))
}

type parser struct{ d *json.Decoder }

// token reads the next token; syntax errors name their byte offset.
func (p *parser) token(path string) (json.Token, error) {
	t, err := p.d.Token()
	if err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, configErr(path, "invalid JSON at byte %d: %s", se.Offset, se.Error())
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, configErr(path, "the policy ends too early")
		}
		return nil, configErr(path, "invalid JSON: %v", err)
	}
	return t, nil
}

func describe(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "a list"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", t)
}

// object reads an object at path, calling field for each member with its
// name and path; a repeated name is an error.
func (p *parser) object(path, what string, field func(name, path string) error) error {
	t, err := p.token(path)
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return configErr(path, "want %s, an object, got %s", what, describe(t))
	}
	seen := map[string]bool{}
	for p.d.More() {
		t, err := p.token(path)
		if err != nil {
			return err
		}
		name, _ := t.(string) // object keys are strings
		sub := name
		if path != "" {
			sub = path + "." + name
		}
		shown := sub
		if domain.LooksSecret(name) {
			shown = path + "." + domain.NotRepeated
		}
		if seen[name] {
			return configErr(shown, "repeated")
		}
		seen[name] = true
		if err := field(name, shown); err != nil {
			return err
		}
	}
	_, err = p.token(path) // '}'
	return err
}

// strings reads a list of strings, or null (nil).
func (p *parser) strings(path string) ([]string, error) {
	t, err := p.token(path)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, nil
	}
	if d, ok := t.(json.Delim); !ok || d != '[' {
		return nil, configErr(path, "want a list of strings, got %s", describe(t))
	}
	out := []string{}
	for p.d.More() {
		t, err := p.token(path)
		if err != nil {
			return nil, err
		}
		s, ok := t.(string)
		if !ok {
			return nil, configErr(fmt.Sprintf("%s[%d]", path, len(out)), "want a string, got %s", describe(t))
		}
		out = append(out, s)
	}
	_, err = p.token(path) // ']'
	return out, err
}

// rule reads one rule at path.
func (p *parser) rule(path string) (*Rule, error) {
	var allow map[string][]string
	var chains, dests []string
	haveDests := false
	err := p.object(path, "a rule", func(name, sub string) error {
		var err error
		switch name {
		case fieldAllow:
			allow = map[string][]string{}
			return p.object(sub, "allow (request kind → operation kinds)", func(kind, sub string) error {
				allow[kind], err = p.strings(sub)
				return err
			})
		case fieldChains:
			chains, err = p.strings(sub)
			return err
		case fieldDestinations:
			haveDests = true
			dests, err = p.strings(sub)
			return err
		}
		return unknownField(sub, name, ruleFields)
	})
	if err != nil {
		return nil, err
	}
	if allow == nil {
		return nil, configErr(path, "missing allow (the request kinds this rule allows)")
	}
	norm, warnings, err := policy.Normalize(allow, nil, nil)
	if err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) {
			return nil, configErr(path+"."+pe.Field, "%s", pe.Msg)
		}
		return nil, configErr(path, "%v", err)
	}
	if len(warnings) > 0 {
		return nil, configErr(path+"."+fieldAllow, "%s (the guard refuses names that match nothing)", warnings[0])
	}
	r := &Rule{Allow: norm}
	for i, c := range chains {
		id, err := request.ParseChainID(c)
		if err != nil {
			return nil, configErr(fmt.Sprintf("%s.%s[%d]", path, fieldChains, i), "%v", err)
		}
		if s := id.String(); !slices.Contains(r.AllowedChains, s) {
			r.AllowedChains = append(r.AllowedChains, s)
		}
	}
	if haveDests {
		if !slices.Contains(norm[string(request.KindGeneric)], "transaction") {
			return nil, configErr(path+"."+fieldDestinations, "set, but allow.generic does not list transaction: no transaction could be signed")
		}
		r.Destinations = []request.Contract{}
		for i, d := range dests {
			c, err := request.ParseContract(d)
			if err != nil {
				return nil, configErr(fmt.Sprintf("%s.%s[%d]", path, fieldDestinations, i), "%v", err)
			}
			if !slices.Contains(r.Destinations, c) {
				r.Destinations = append(r.Destinations, c)
			}
		}
	}
	return r, nil
}

// Format returns the rules in their canonical compact form: the JSON
// ParseRules reads, with keys sorted, operation kinds in the order Normalize
// keeps them, and nothing optional that is unset. ParseRules(Format(rs))
// describes the same rules.
func (rs *Rules) Format() []byte {
	type ruleJSON struct {
		Allow        map[string][]string `json:"allow"`
		Chains       []string            `json:"allowed_chains,omitempty"`
		Destinations *[]string           `json:"transaction_destinations,omitempty"`
	}
	conv := func(r *Rule) ruleJSON {
		out := ruleJSON{Allow: r.Allow, Chains: r.AllowedChains}
		if r.Destinations != nil {
			ds := make([]string, len(r.Destinations))
			for i, d := range r.Destinations {
				ds[i] = d.String()
			}
			out.Destinations = &ds
		}
		return out
	}
	var doc struct {
		Keys  map[string]ruleJSON `json:"keys,omitempty"`
		Types map[string]ruleJSON `json:"key_types,omitempty"`
	}
	if len(rs.Keys) > 0 {
		doc.Keys = map[string]ruleJSON{}
		for _, k := range slices.SortedFunc(maps.Keys(rs.Keys), func(a, b tezos.PublicKeyHash) int { return strings.Compare(a.String(), b.String()) }) {
			doc.Keys[k.String()] = conv(rs.Keys[k])
		}
	}
	if len(rs.Types) > 0 {
		doc.Types = map[string]ruleJSON{}
		for t, r := range rs.Types {
			doc.Types[t.AddressPrefix()] = conv(r)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil { // cannot happen: strings, lists and maps of strings
		panic(err)
	}
	return b
}
