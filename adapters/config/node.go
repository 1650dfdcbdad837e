package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/domain"
)

// lookupFunc resolves an environment variable (ok false when unset).
type lookupFunc func(name string) (value string, ok bool)

// expandError is an unset (or set but empty) variable met while expanding.
type expandError struct {
	name  string
	empty bool // set, to the empty string
}

func (e *expandError) Error() string {
	if e.empty {
		return fmt.Sprintf("environment variable %s is set but empty (write ${%s:-default} to give a default, or ${%s:-} if empty is meant)", e.name, e.name, e.name)
	}
	return fmt.Sprintf("environment variable %s is not set (write ${%s:-default} to give a default)", e.name, e.name)
}

// expand replaces $NAME, ${NAME} and ${NAME:-default} in s. $$ is a literal
// $, and a $ not followed by a name or a brace is kept as is. A variable
// that is unset, or set to the empty string, is an error naming it unless a
// default is given (as in the shell, ${NAME:-default} takes the default in
// both cases; ${NAME:-} says that empty is meant): it must never become an
// empty string silently (an empty authorized_keys turns authentication off,
// an empty base_dir moves the watermarks).
func expand(s string, lookup lookupFunc) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		next := s[i+1]
		switch {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %s", quote(s))
			}
			body := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(body, ":-")
			if !validName(name) {
				return "", fmt.Errorf("invalid variable reference ${%s}", truncate(body))
			}
			v, ok := lookup(name)
			switch {
			case ok && v != "":
				b.WriteString(v)
			case hasDef:
				dv, err := expand(def, lookup)
				if err != nil {
					return "", err
				}
				b.WriteString(dv)
			default:
				return "", &expandError{name: name, empty: ok}
			}
			i += 2 + end
		case isNameStart(next):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			name := s[i+1 : j]
			v, ok := lookup(name)
			if !ok || v == "" {
				return "", &expandError{name: name, empty: ok}
			}
			b.WriteString(v)
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isNameStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isNameChar(c byte) bool  { return isNameStart(c) || '0' <= c && c <= '9' }

func validName(s string) bool {
	if s == "" || !isNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// envLookup resolves from the environment; BASE_DIR, when the environment
// does not set it, is baseDir (if non-empty).
func envLookup(baseDir string) lookupFunc {
	return func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		if name == "BASE_DIR" && baseDir != "" {
			return baseDir, true
		}
		return "", false
	}
}

// expandNode expands variables in every scalar of the tree under n (keys
// and values), in place, after parsing: a variable's value is always one
// scalar and can never add YAML structure. path names n in errors.
func expandNode(n *yaml.Node, path string, lookup lookupFunc) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := expandNode(c, path, lookup); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if err := expandScalar(k, join(path, k.Value), lookup); err != nil {
				return err
			}
			if err := expandNode(v, join(path, k.Value), lookup); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandNode(c, fmt.Sprintf("%s[%d]", path, i), lookup); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		return expandScalar(n, path, lookup)
	}
	return nil
}

func expandScalar(n *yaml.Node, path string, lookup lookupFunc) error {
	v, err := expand(n.Value, lookup)
	if err != nil {
		if secretField(path) {
			// The message would repeat part of the value (a "variable"
			// may be a fragment of a password holding a $).
			return errorAt(n.Line, path, "a $ reference in this secret does not expand (a variable unset or set but empty, or a malformed ${…}; the value is not repeated); write $$ for a literal $")
		}
		return &Error{Line: n.Line, Field: path, Msg: err.Error(), Err: err}
	}
	if v != n.Value {
		n.Value = v
		// A plain scalar's type was resolved from the unexpanded text
		// (always a string); let the decoder resolve it again from the
		// value, as if the file had held it. Quoted scalars stay strings.
		if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			n.Tag = ""
		}
	}
	return nil
}

// secretFields are the settings whose values are secrets: errors about them
// never repeat any part of the value.
var secretFields = map[string]bool{"password": true, "secret": true, "secret_access_key": true, "session_token": true, "passphrase": true, "application_credentials_data": true}

func secretField(path string) bool {
	return secretFields[path[strings.LastIndexByte(path, '.')+1:]]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	nodeType        = reflect.TypeOf(yaml.Node{})
	yamlUnmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// checkFields reports, with its line and path, the first mapping key under n
// that names no field of t: an unknown setting is usually a typo of a real
// one and must not be silently ignored. Raw sections (yaml.Node fields) and
// types with their own UnmarshalYAML are left to their decoders.
func checkFields(n *yaml.Node, t reflect.Type, path string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return checkFields(n.Content[0], t, path)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType || reflect.PointerTo(t).Implements(yamlUnmarshaler) || t.Implements(yamlUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // the decoder reports the type mismatch
		}
		fields := yamlFields(t)
		for _, p := range pairs(n) {
			ft, ok := fields[p.key]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				if len(known) == 0 {
					return errorAt(p.keyNode.Line, join(path, p.key), "unknown field (this section takes no fields)")
				}
				slices.Sort(known)
				return errorAt(p.keyNode.Line, join(path, p.key), "unknown field%s", knownHint(p.key, known, "known fields"))
			}
			if err := checkFields(p.value, ft, join(path, p.key)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for _, p := range pairs(n) {
			if err := checkFields(p.value, t.Elem(), join(path, p.key)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range n.Content {
			if err := checkFields(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlFields maps the YAML names of t's fields (inline structs included)
// to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// decodeNode decodes n into v strictly: unknown fields are refused, and
// every error carries the file's own line number and the field's path
// (relative to path). A value of the wrong type is reported for the field
// that holds it, even when several fields share a line, and never repeated:
// yaml.v3 quotes the first characters of the value, which may be a secret
// typed into the wrong field.
func decodeNode(n *yaml.Node, path string, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode target must be a non-nil pointer, got %T", v)
	}
	if err := checkFields(n, rv.Type().Elem(), path); err != nil {
		return err
	}
	err := n.Decode(v)
	if err == nil {
		return nil
	}
	var msgs []error
	typeErrors(n, rv.Type().Elem(), path, &msgs, 0)
	if len(msgs) == 1 {
		return msgs[0]
	}
	if len(msgs) > maxReported {
		more := len(msgs) - maxReported
		msgs = append(msgs[:maxReported], errorAt(0, "", "and %d more value%s of the wrong type", more, map[bool]string{true: "", false: "s"}[more == 1]))
	}
	if len(msgs) > 1 {
		return errors.Join(msgs...)
	}
	// Not located (should not happen): the decoder's own lines, without
	// the values.
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &Error{Line: n.Line, Field: path, Msg: err.Error(), Err: err}
	}
	for _, m := range te.Errors {
		line := n.Line
		if sm := typeErrLineNum.FindStringSubmatch(m); sm != nil {
			line, _ = strconv.Atoi(sm[1])
		}
		msgs = append(msgs, errorAt(line, path, "%s", stripValue(typeErrLine.ReplaceAllString(m, ""))))
	}
	return errors.Join(msgs...)
}

// maxReported bounds how many wrong values one error reports, one line
// each.
const maxReported = 10

var (
	typeErrLine    = regexp.MustCompile(`^line \d+: `)
	typeErrLineNum = regexp.MustCompile(`^line (\d+): `)
	quotedValue    = regexp.MustCompile("\\s*`[^`]*`")
)

// stripValue removes the quoted value from a yaml.v3 type error ("cannot
// unmarshal !!str `Sup3rS...` into int" → "cannot unmarshal !!str into
// int").
func stripValue(m string) string { return quotedValue.ReplaceAllString(m, "") }

// typeErrors walks n along the Go type t and decodes each leaf on its own,
// appending one message per leaf that does not decode: its line, its path
// and the type mismatch, without its value.
func typeErrors(n *yaml.Node, t reflect.Type, path string, out *[]error, depth int) {
	n = resolve(n)
	if n == nil || depth > 64 {
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			typeErrors(n.Content[0], t, path, out, depth+1)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	leaf := t == nodeType || reflect.PointerTo(t).Implements(yamlUnmarshaler) || t.Implements(yamlUnmarshaler)
	switch {
	case !leaf && t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for _, p := range pairs(n) {
			if ft, ok := fields[p.key]; ok {
				typeErrors(p.value, ft, join(path, p.key), out, depth+1)
			}
		}
		return
	case !leaf && t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for _, p := range pairs(n) {
			typeErrors(p.keyNode, t.Key(), join(path, p.key), out, depth+1)
			typeErrors(p.value, t.Elem(), join(path, p.key), out, depth+1)
		}
		return
	case !leaf && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			typeErrors(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out, depth+1)
		}
		return
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// An UnmarshalYAML of ours: its message repeats no secret and may
		// name a line inside the value.
		line, msg := n.Line, err.Error()
		if m := typeErrLineNum.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = msg[len(m[0]):]
		}
		*out = append(*out, errorAt(line, path, "%s", msg))
		return
	}
	for _, m := range te.Errors {
		*out = append(*out, errorAt(n.Line, path, "%s", stripValue(typeErrLine.ReplaceAllString(m, ""))))
	}
}

func truncate(s string) string { return domain.Echo(s) }

func quote(s string) string { return strconv.Quote(domain.Echo(s)) }
