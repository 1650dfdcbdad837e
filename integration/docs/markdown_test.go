package docs_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// block is one fenced block of a Markdown file.
type block struct {
	File string // path relative to the repository
	Line int    // line of the opening fence
	Lang string // the fence's info string (first word)
	// Directive and Args come from `<!-- doctest: DIRECTIVE ARGS -->` on
	// the line above the fence ("" when there is none).
	Directive string
	Args      []string
	Body      string
}

func (b block) String() string { return fmt.Sprintf("%s:%d (%s)", b.File, b.Line, b.Lang) }

var directiveRE = regexp.MustCompile(`^<!--\s*doctest:\s*(.*?)\s*-->\s*$`)

// parseBlocks returns the fenced blocks of a Markdown document. Fences are
// lines starting with ``` (no indentation); a fence inside a block closes
// it.
func parseBlocks(name string, src []byte) ([]block, error) {
	var out []block
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var (
		in       bool
		cur      block
		body     strings.Builder
		prev     string // the last line before the current one
		lineNo   int
		pendingD string
	)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		switch {
		case !in && strings.HasPrefix(line, "```"):
			in = true
			cur = block{File: name, Line: lineNo, Lang: "text"}
			if f := strings.Fields(strings.TrimPrefix(line, "```")); len(f) > 0 {
				cur.Lang = f[0]
			}
			if m := directiveRE.FindStringSubmatch(prev); m != nil {
				pendingD = m[1]
			} else {
				pendingD = ""
			}
			if f := strings.Fields(pendingD); len(f) > 0 {
				cur.Directive, cur.Args = f[0], f[1:]
			}
			body.Reset()
		case in && strings.HasPrefix(line, "```"):
			in = false
			cur.Body = body.String()
			out = append(out, cur)
		case in:
			body.WriteString(line)
			body.WriteByte('\n')
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if in {
		return nil, fmt.Errorf("%s:%d: a fenced block is never closed", name, cur.Line)
	}
	return out, nil
}

func readBlocks(root, name string) ([]block, error) {
	src, err := os.ReadFile(root + "/" + name)
	if err != nil {
		return nil, err
	}
	return parseBlocks(name, src)
}

// Directives each kind of block may carry.
var directivesFor = map[string][]string{
	"sh":   {"run", "daemon", "cloud", "system", "bench", "record", "example", "covered-by"},
	"bash": {"run", "daemon", "cloud", "system", "bench", "record", "example", "covered-by"},
	"yaml": {"config", "config-fragment", "yaml"},
}

// checkDirective reports a shell or YAML block without a known directive,
// and a directive on a block of another kind.
func checkDirective(b block) error {
	allowed, checked := directivesFor[b.Lang]
	if !checked {
		if b.Directive != "" {
			return fmt.Errorf("%s: doctest directive %q on a %s block, which is not run", b, b.Directive, b.Lang)
		}
		return nil
	}
	if b.Directive == "" {
		return fmt.Errorf("%s: no <!-- doctest: … --> line above the block: say how it is run (%s; see integration/docs)", b, strings.Join(allowed, ", "))
	}
	for _, a := range allowed {
		if a == b.Directive {
			return nil
		}
	}
	return fmt.Errorf("%s: unknown doctest directive %q for a %s block (want one of %s)", b, b.Directive, b.Lang, strings.Join(allowed, ", "))
}
