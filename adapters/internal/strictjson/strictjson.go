// Package strictjson checks that a JSON state file (key file, watermark
// file, watermark export) has exactly the shape its Go type describes,
// before encoding/json decodes it leniently: one value and nothing after
// it, not null at the top level, no key repeated in an object (encoding/json
// would keep the last, compared case-insensitively), and, in an object that
// decodes into a struct, only the struct's exact field names (encoding/json
// accepts "Level" for "level" and ignores unknown names). A file that fails
// is corrupt or hand-edited and must be refused, never half-read.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
)

// maxDepth bounds nesting; state files are a few levels deep.
const maxDepth = 32

// Check validates data against the shape of shape's type (a value or a
// pointer to one; only its type is used). Errors name the offending path,
// e.g. `[3].public_key_hash` or `tz1….attestation.Level`.
func Check(data []byte, shape any) error {
	t := reflect.TypeOf(shape)
	if t == nil {
		return errors.New("strictjson: nil shape")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return errors.New("empty document")
	}
	if err != nil {
		return SyntaxError(data, err)
	}
	if tok == nil {
		return errors.New("the document is null")
	}
	c := &checker{dec: dec, data: data}
	if err := c.value(tok, t, "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

type checker struct {
	dec  *json.Decoder
	data []byte
}

var unmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// value checks the value that starts with tok against t (nil t: any shape).
func (c *checker) value(tok json.Token, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: nested more than %d levels", where(path), maxDepth)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshaler)) {
		t = nil // its own decoder decides; duplicates are still refused
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // scalars: encoding/json reports type mismatches
	}
	switch d {
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = jsonFields(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]string{}
		for c.dec.More() {
			kt, err := c.dec.Token()
			if err != nil {
				return SyntaxError(c.data, err)
			}
			key, _ := kt.(string)
			folded := strings.ToLower(key)
			if prev, dup := seen[folded]; dup {
				if prev == key {
					return fmt.Errorf("%s: key %q appears twice", where(path), key)
				}
				return fmt.Errorf("%s: keys %q and %q both appear (they name the same field)", where(path), prev, key)
			}
			seen[folded] = key
			sub := path + "." + key
			if path == "" {
				sub = key
			}
			var vt reflect.Type
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return fmt.Errorf("%s: unknown field %q (known: %s)", where(path), key, strings.Join(sortedKeys(fields), ", "))
				}
				vt = ft
			} else {
				vt = elem
			}
			vtok, err := c.dec.Token()
			if err != nil {
				return SyntaxError(c.data, err)
			}
			if err := c.value(vtok, vt, sub, depth+1); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; c.dec.More(); i++ {
			vtok, err := c.dec.Token()
			if err != nil {
				return SyntaxError(c.data, err)
			}
			if err := c.value(vtok, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := c.dec.Token(); err != nil { // the closing delimiter
		return SyntaxError(c.data, err)
	}
	return nil
}

func where(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// jsonFields maps the exact JSON names of t's fields (embedded structs
// flattened) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// SyntaxError describes err, an encoding/json error met while decoding
// data, by where data stops being valid JSON: "invalid JSON at line L,
// column C: …" for a syntax error, the line for a document cut short.
func SyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := 1, 1
		for _, c := range data[:min(int(se.Offset), len(data))] {
			if c == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		return fmt.Errorf("invalid JSON at line %d, column %d: %v", line, col, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON at line %d: unexpected end of data", bytes.Count(data, []byte("\n"))+1)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}
