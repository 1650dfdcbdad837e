package signatorydiff

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/integration/harness"
)

// allowEntry is one known difference of testdata/allowlist.yaml. It
// matches a difference when every pattern matches (`*` is any text,
// slashes included). A documented entry names the section of the
// migration guide (doc: path#anchor) and quotes the line there that
// documents the difference; a pending entry names the branch or issue
// that removes the difference instead.
type allowEntry struct {
	ID        string `yaml:"id"`
	Scenario  string `yaml:"scenario"`
	Case      string `yaml:"case"`
	Field     string `yaml:"field"`
	Signatory string `yaml:"signatory"`
	Sigil     string `yaml:"sigil"`
	Doc       string `yaml:"doc"`
	Quote     string `yaml:"quote"`
	Pending   string `yaml:"pending"`
	Note      string `yaml:"note"`

	res  [5]*regexp.Regexp
	line string // file:line of the quote in the guide
}

func (a *allowEntry) matches(d diff) bool {
	for i, v := range []string{d.Scenario, d.Case, d.Field, d.Signatory, d.Sigil} {
		if !a.res[i].MatchString(v) {
			return false
		}
	}
	return true
}

// checkPattern refuses what glob does not support: nested or unbalanced
// braces, a trailing backslash.
func checkPattern(p string) error {
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i++; i == len(p) {
				return fmt.Errorf("trailing backslash")
			}
		case '{':
			if depth++; depth > 1 {
				return fmt.Errorf("nested braces")
			}
		case '}':
			if depth--; depth < 0 {
				return fmt.Errorf("unbalanced braces")
			}
		}
	}
	if depth != 0 {
		return fmt.Errorf("unbalanced braces")
	}
	return nil
}

// glob compiles a pattern (checked by checkPattern): `*` is any text
// (slashes included), `{a,b,c}` any one of the alternatives, `\x` the
// character x (to match a literal *, {, } or ,), the rest literal.
func glob(p string) *regexp.Regexp {
	var b strings.Builder
	inAlt := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' && i+1 < len(p):
			i++
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		case c == '*':
			b.WriteString(".*")
		case c == '{':
			inAlt = true
			b.WriteString("(?:")
		case c == '}' && inAlt:
			inAlt = false
			b.WriteString(")")
		case c == ',' && inAlt:
			b.WriteString("|")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	return regexp.MustCompile(`^(?s:` + b.String() + `)$`)
}

const allowListPath = "testdata/allowlist.yaml"

// loadAllowList reads and checks the allow-list: strict YAML, unique ids,
// every pattern set, and each entry either documented — its doc names a
// heading of the guide and its quote is a line of that section. A pending
// entry (a difference being worked on, on a branch) fails the load.
func loadAllowList(t testing.TB) []*allowEntry {
	t.Helper()
	raw, err := os.ReadFile(allowListPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Entries []*allowEntry `yaml:"entries"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", allowListPath, err)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	guides := map[string][]string{}
	ids := map[string]bool{}
	for i, a := range file.Entries {
		where := fmt.Sprintf("%s entry %d (%s)", allowListPath, i+1, a.ID)
		if a.ID == "" || ids[a.ID] {
			t.Fatalf("%s: missing or duplicate id", where)
		}
		ids[a.ID] = true
		for j, p := range []string{a.Scenario, a.Case, a.Field, a.Signatory, a.Sigil} {
			if p == "" {
				t.Fatalf("%s: scenario, case, field, signatory and sigil must all be set (use * for any)", where)
			}
			if err := checkPattern(p); err != nil {
				t.Fatalf("%s: pattern %q: %v", where, p, err)
			}
			a.res[j] = glob(p)
		}
		switch {
		case a.Pending != "":
			// A difference is fixed or documented before it lands: the
			// checked-in list holds documented entries only.
			t.Fatalf("%s: pending (%s): fix the difference or document it in the migration guide and quote that line", where, a.Pending)
		case a.Doc == "" || a.Quote == "":
			t.Fatalf("%s: needs doc (docs/….md#anchor) and quote (the documenting line's text)", where)
		}
		file, anchor, ok := strings.Cut(a.Doc, "#")
		if !ok || anchor == "" || !strings.HasPrefix(file, "docs/") {
			t.Fatalf("%s: doc %q is not docs/….md#anchor", where, a.Doc)
		}
		lines, ok := guides[file]
		if !ok {
			b, err := os.ReadFile(filepath.Join(root, file))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			lines = strings.Split(string(b), "\n")
			guides[file] = lines
		}
		from, to, ok := section(lines, anchor)
		if !ok {
			t.Fatalf("%s: %s has no heading with anchor #%s", where, file, anchor)
		}
		for n := from; n < to; n++ {
			if strings.Contains(lines[n], a.Quote) {
				a.line = fmt.Sprintf("%s:%d", file, n+1)
				break
			}
		}
		if a.line == "" {
			t.Fatalf("%s: the section #%s of %s has no line containing %q", where, anchor, file, a.Quote)
		}
	}
	return file.Entries
}

// section finds the heading whose GitHub anchor is anchor and returns the
// line range of its section (up to the next heading of the same or a
// higher level).
func section(lines []string, anchor string) (int, int, bool) {
	level := 0
	from := -1
	inCode := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(l, "#") {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "#"))
		if from >= 0 && n <= level {
			return from, i, true
		}
		if from < 0 && slug(strings.TrimSpace(l[n:])) == anchor {
			from, level = i+1, n
		}
	}
	return from, len(lines), from >= 0
}

// slug is GitHub's heading anchor: lower case, spaces to hyphens, every
// character but letters, digits, hyphens and underscores dropped.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAllowList checks the allow-list and its links into the migration
// guide without running anything (also under -short).
func TestAllowList(t *testing.T) {
	entries := loadAllowList(t)
	documented := 0
	for _, a := range entries {
		if a.Pending == "" {
			documented++
		}
	}
	t.Logf("%d entries: %d documented in the migration guide, %d pending", len(entries), documented, len(entries)-documented)
}

func TestSlugAndSection(t *testing.T) {
	for h, want := range map[string]string{
		"HTTP, JWT, policy hook": "http-jwt-policy-hook",
		"Policy and signing":     "policy-and-signing",
		"Watermark migration":    "watermark-migration",
		"`watermarks` import":    "watermarks-import",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
	lines := strings.Split("# A\nx\n## B\ny\n```\n# not a heading\n```\nz\n## C\nw\n# D\n", "\n")
	if from, to, ok := section(lines, "b"); !ok || from != 3 || to != 8 {
		t.Errorf("section b = %d..%d %v, want 3..8", from, to, ok)
	}
	if from, to, ok := section(lines, "a"); !ok || from != 1 || to != 10 {
		t.Errorf("section a = %d..%d %v, want 1..10", from, to, ok)
	}
	if _, _, ok := section(lines, "not-a-heading"); ok {
		t.Error("a line inside a code block was taken for a heading")
	}
	e := allowEntry{res: [5]*regexp.Regexp{glob("main"), glob("op/*/w1"), glob("status"), glob("403"), glob("4*")}}
	if !e.matches(diff{"main", "op/transaction/simple/w1", "status", "403", "404"}) {
		t.Error("* must match across slashes")
	}
	if e.matches(diff{"main", "op/x/w1", "status", "403", "200"}) || e.matches(diff{"main2", "op/x/w1", "status", "403", "404"}) {
		t.Error("a pattern matched what it should not")
	}
	alt := glob("watermark/{bpre,batt}/{w1,w2}/*")
	for s, want := range map[string]bool{
		"watermark/bpre/w1/1-first": true, "watermark/batt/w2/x": true,
		"watermark/bpre/w4/1-first": false, "watermark/blk/w1/1": false, "watermark/{bpre,batt}/w1/x": false,
	} {
		if alt.MatchString(s) != want {
			t.Errorf("alternatives: %q matched %v, want %v", s, !want, want)
		}
	}
	if !glob("{a*,b}").MatchString("abc") {
		t.Error("a star inside alternatives is not handled")
	}
	if lit := glob(`m \{a=\"x\"\,b=*\}`); !lit.MatchString(`m {a="x",b="y"}`) || lit.MatchString(`m a="x"`) {
		t.Error("escaped braces and commas are not literal")
	}
	for _, p := range []string{"{a,{b,c}}", "x{1,2", "a}b", `a\`} {
		if checkPattern(p) == nil {
			t.Errorf("pattern %q accepted", p)
		}
	}
}

// TestClassify: a difference no entry matches is new; the first matching
// entry decides documented or pending; an entry of a scenario that ran and
// matched nothing is stale, one of a scenario that did not run is not.
func TestClassify(t *testing.T) {
	entry := func(id, scenario, cs, pending string) *allowEntry {
		a := &allowEntry{ID: id, Pending: pending}
		for i, p := range []string{scenario, cs, "status", "403", "404"} {
			a.res[i] = glob(p)
		}
		return a
	}
	allow := []*allowEntry{
		entry("doc", "main", "unknown-key/*", ""),
		entry("pend", "main", "*", "issue-16-parity"),
		entry("gone", "main", "never", ""),
		entry("other", "jwt", "x", ""),
	}
	diffs := []diff{
		{"main", "unknown-key/stranger", "status", "403", "404"},
		{"main", "pop/stranger", "status", "403", "404"},
		{"main", "pop/stranger", "status", "403", "500"},
	}
	diffs = append(diffs,
		diff{"main", "unknown-key/stranger", "metric x {}", "+1", "0"}, // follows the case's status entry
		diff{"main", "other-case", "metric x {}", "+1", "0"},           // no status difference: new
	)
	v := classify(diffs, allow, map[string]bool{"main": true})
	if len(v.fresh) != 2 || v.fresh[0].Sigil != "500" || v.fresh[1].Case != "other-case" {
		t.Errorf("new differences %v, want the 500 and other-case's metric", v.fresh)
	}
	if v.pending != 1 || v.rows[0][0] != "documented doc" || v.rows[1][0] != "pending pend" || v.rows[2][0] != "NEW" ||
		v.rows[3][0] != "follows documented doc" || v.rows[4][0] != "NEW" {
		t.Errorf("verdicts %v (pending %d)", v.rows, v.pending)
	}
	if len(v.stale) != 1 || !strings.HasPrefix(v.stale[0], "gone ") {
		t.Errorf("stale entries %v, want gone only (jwt did not run)", v.stale)
	}
}
