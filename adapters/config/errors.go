package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/suggest"
)

// Error is one configuration problem, in the one format every
// configuration error has: FILE:LINE: FIELD: problem. File is the
// configuration file (empty for text parsed from memory, which prints as
// "line LINE: FIELD: problem"); Line is the line of the field in the file,
// or of its nearest enclosing field present there when the field itself is
// absent (0 when not even that is known); Field is the field's path
// (vaults.cs.config.host, tezos.tz1….allow.generic[2]; empty for the whole
// document). Msg never repeats a value that may be a secret: only names
// (field names, keys, kinds, drivers) are echoed, and "did you mean"
// suggestions come from the known names only.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
	// Err is the underlying error, when there is one (errors.Is/As).
	Err error
	// placed: Field is the whole path and Line is set (Errorf, Wrap);
	// Wrap leaves such an error as it is.
	placed bool
}

// maxField bounds how much of a field's path an error repeats.
const maxField = 200

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(displayField(e.Field) + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// errorAt returns the Error of field at line.
func errorAt(line int, field, format string, args ...any) *Error {
	return &Error{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an error about one field of a driver's section,
// named relative to the section (port, storage.config.table): the
// application adds the section's path, the file and the line when it
// reports it.
func FieldErrorf(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Unknown returns the message for a name that is not one of known:
// `unknown WHAT "NAME" (did you mean X? known: A, B, C)`. The name is
// repeated shortened; the suggestions are names of known only.
func Unknown(what, name string, known []string) string {
	return fmt.Sprintf("unknown %s %s%s", what, echoName(name), knownHint(name, known, "known"))
}

// knownHint returns " (did you mean X? LABEL: A, B)", or " (LABEL: A, B)"
// when no known name is close to name.
func knownHint(name string, known []string, label string) string {
	return suggest.Hint(name, known, label+": "+strings.Join(known, ", "))
}

// looksSecret reports whether s looks like a secret key (a key pasted
// where a name belongs).
func looksSecret(s string) bool { return domain.LooksSecret(s) }

// redacted stands for a name that looks like a secret key.
const redacted = domain.NotRepeated

// echoName repeats a name given in the file, quoted and shortened, unless
// it looks like a secret key.
func echoName(s string) string { return domain.EchoName(s) }

// displayField is a field's path as errors show it: bounded, and without
// a segment that looks like a secret key.
func displayField(f string) string {
	if strings.ContainsAny(f, "ep2Bu") { // cheap pre-check of the prefixes' letters
		segs := strings.Split(f, ".")
		for i, seg := range segs {
			if looksSecret(seg) {
				segs[i] = redacted
			}
		}
		f = strings.Join(segs, ".")
	}
	if len(f) > maxField {
		f = strings.ToValidUTF8(f[:maxField], "") + fmt.Sprintf("…(%d bytes)", len(f))
	}
	return f
}

// Errorf returns the Error of field in c's file: its line (or that of the
// nearest enclosing field present in the file), the file's name, and the
// message.
func (c *Config) Errorf(field, format string, args ...any) error {
	return c.errorf(field, format, args...)
}

func (c *Config) errorf(field, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.Line(field), Field: field, Msg: fmt.Sprintf(format, args...), placed: true}
}

// Wrap reports err, a problem with the section at field (a driver's
// section, a policy), in the configuration's format. Configuration errors
// in err's chain keep their own line and get the section's path in front of
// their field (a driver reports the field relative to its section, see
// FieldErrorf); anything else is reported at the section's line with the
// section's path.
func (c *Config) Wrap(field string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = c.Wrap(field, e)
		}
		return errors.Join(out...)
	}
	var ce *Error
	if errors.As(err, &ce) {
		if ce.placed {
			return ce
		}
		out := *ce
		out.placed = true
		out.File = c.File
		if ce.Field != "" {
			out.Field = join(field, ce.Field)
		} else {
			out.Field = field
		}
		if out.Line == 0 {
			out.Line = c.Line(out.Field)
		}
		if out.Err == nil {
			out.Err = err
		}
		return &out
	}
	return &Error{File: c.File, Line: c.Line(field), Field: field, Msg: err.Error(), Err: err, placed: true}
}

// Line returns the line of the field at path in the configuration file:
// the line of its key for a mapping entry, of its entry for a list element;
// for a field absent from the file, the line of its nearest enclosing field
// present; 0 when the configuration was not read from text.
func (c *Config) Line(path string) int {
	if c == nil || c.root == nil {
		return 0
	}
	return lineOf(c.root, path)
}

// lineOf walks root along path (as join and the [i] of lists spell paths)
// and returns the line of the deepest field of path present in the tree.
func lineOf(root *yaml.Node, path string) int {
	n, prefix, line := resolve(root), "", 0
	for n != nil && prefix != path {
		var next *yaml.Node
		best := ""
		try := func(cand string, l int, child *yaml.Node) {
			if len(cand) > len(best) && (path == cand || strings.HasPrefix(path, cand+".") || strings.HasPrefix(path, cand+"[")) {
				best, line, next = cand, l, child
			}
		}
		switch n.Kind {
		case yaml.MappingNode:
			for _, p := range pairs(n) {
				try(join(prefix, p.key), p.keyNode.Line, p.value)
			}
		case yaml.SequenceNode:
			for i, e := range n.Content {
				try(fmt.Sprintf("%s[%d]", prefix, i), e.Line, e)
			}
		}
		if best == "" {
			break
		}
		n, prefix = resolve(next), best
	}
	return line
}

// withFile sets the file of every configuration error in err (a joined
// error included); an error of another kind is reported as a problem of
// the file.
func withFile(err error, file string) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = withFile(e, file)
		}
		return errors.Join(out...)
	}
	if ce, ok := err.(*Error); ok {
		ce.File = file
		return ce
	}
	return &Error{File: file, Msg: err.Error(), Err: err}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError reports a YAML syntax error at its line, with hint after it.
func syntaxError(err error, hint string) error {
	msg, line := err.Error(), 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return &Error{Line: line, Msg: "YAML syntax: " + msg + hint, Err: err}
}
