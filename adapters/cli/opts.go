package cli

import (
	"fmt"
	"strings"
	"unicode"
)

// parseOptions parses import's -o/--opt value as Signatory does:
// key:val[,key:val...], white space around the separators ignored, a key
// or value optionally quoted ('…' or "…"), a backslash escaping the next
// character.
func parseOptions(s string) (map[string]string, error) {
	out := map[string]string{}
	p := []rune(s)
	i := 0
	skip := func() {
		for i < len(p) && unicode.IsSpace(p[i]) {
			i++
		}
	}
	token := func(end rune) (string, error) {
		var b strings.Builder
		var quote rune
		if i < len(p) && (p[i] == '\'' || p[i] == '"') {
			quote = p[i]
			i++
		}
		for ; i < len(p); i++ {
			c := p[i]
			switch {
			case c == '\\':
				if i+1 == len(p) {
					return "", fmt.Errorf("-o %q: a backslash ends the value", s)
				}
				i++
				b.WriteRune(p[i])
			case quote != 0 && c == quote:
				i++
				return b.String(), nil
			case quote == 0 && (c == end || unicode.IsSpace(c)):
				return b.String(), nil
			default:
				b.WriteRune(c)
			}
		}
		if quote != 0 {
			return "", fmt.Errorf("-o %q: unterminated quote", s)
		}
		return b.String(), nil
	}
	for {
		skip()
		if i == len(p) {
			return out, nil
		}
		name, err := token(':')
		if err != nil {
			return nil, err
		}
		skip()
		if i == len(p) || p[i] != ':' {
			return nil, fmt.Errorf("-o %q: want key:value[,key:value...]", s)
		}
		i++
		skip()
		val, err := token(',')
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, fmt.Errorf("-o %q: empty option name", s)
		}
		out[name] = val
		skip()
		if i == len(p) {
			return out, nil
		}
		if p[i] != ',' {
			return nil, fmt.Errorf("-o %q: unexpected %q (want , between options)", s, p[i])
		}
		i++
	}
}
