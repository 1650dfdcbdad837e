package signatorydiff

import (
	"fmt"
	"strconv"
	"strings"
)

// diff is one difference between Signatory's and Sigil's answers.
type diff struct {
	Scenario, Case, Field string
	Signatory, Sigil      string
}

func (e *env) record(scenario, cs, field, signatory, sigil string) {
	e.diffs = append(e.diffs, diff{Scenario: scenario, Case: cs, Field: field, Signatory: signatory, Sigil: sigil})
}

// compare records every difference between the two outcomes of one case:
// status, body shape, signature validity, signature equality for the
// deterministic schemes (Ed25519, BLS), the answer's value and what the
// policy hook received.
func (e *env) compare(scenario string, cs tcase, s, g outcome) {
	e.stats.cases++
	rec := func(field, a, b string) {
		if a != b {
			e.record(scenario, cs.name, field, a, b)
		}
	}
	rec("status", statusText(s), statusText(g))
	rec("body", s.shape, g.shape)
	if s.sig != "" || g.sig != "" {
		rec("signature", orNone(s.sigValid), orNone(g.sigValid))
		if s.sigValid == "valid" && g.sigValid == "valid" {
			e.stats.bothValid++
			if e.deterministic(cs.targetKey()) {
				e.stats.equalChecked++
				if s.sig != g.sig {
					e.record(scenario, cs.name, "signature equality", s.sig, g.sig)
				}
			}
		}
	}
	rec("value", s.value, g.value)
	rec("hook", s.hook, g.hook)
}

// deterministic reports whether the key's scheme signs deterministically
// (Ed25519, BLS); ECDSA signatures (tz2, tz3) are random in Signatory, so
// only their validity is compared.
func (e *env) deterministic(key string) bool {
	if key == "" {
		return false
	}
	t := e.c.key(key).Type
	return t == "tz1" || t == "tz4"
}

func statusText(o outcome) string {
	if o.status == 0 {
		return "no answer"
	}
	return strconv.Itoa(o.status)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// table renders rows as an aligned text table, cells clipped to width
// runes (0: not clipped).
func table(header []string, rows [][]string, width int) string {
	w := make([]int, len(header))
	clip := func(s string) string {
		s = strings.ReplaceAll(s, "\n", " ")
		if r := []rune(s); width > 0 && len(r) > width {
			s = string(r[:width]) + "…"
		}
		return s
	}
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			w[i] = max(w[i], len([]rune(clip(c))))
		}
	}
	var b strings.Builder
	line := func(r []string) {
		for i, c := range r {
			c = clip(c)
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s | ", w[i], c)
			}
		}
		b.WriteString("\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", w[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	return b.String()
}
