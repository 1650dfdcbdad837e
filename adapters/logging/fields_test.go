package logging

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestLogFieldsOneTypeEach checks every logging call of the module's code
// (tests aside), type-checked: every attribute key is a constant in
// snake_case, none is a key slog writes itself, none is given twice in one
// call, and every value has a type whose JSON and text forms agree (a
// string, a number, a bool, a time.Duration or time.Time, an error); and,
// across the whole code base, each key has one JSON type. Keys spread from
// a []any cannot be checked and are refused (build []slog.Attr and call
// LogAttrs). With the handler (one value per key on a line, durations as
// text), this makes every JSON line of Sigil's parse with one type per
// field name.
func TestLogFieldsOneTypeEach(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the module")
	}
	pkgs := listPackages(t)
	var checked []*goPackage
	for _, p := range pkgs {
		if p.main && slices.Contains(p.Imports, "log/slog") {
			checked = append(checked, p)
		}
	}
	if len(checked) < 20 {
		t.Fatalf("only %d packages checked: the test is not looking at the code", len(checked))
	}
	problems, fields := checkPackages(t, checked, pkgs)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d packages, %d log field names", len(checked), fields)
}

// TestLogFieldsCheckerFinds: the checker reports each kind of problem, in
// a package written to have one of each (testdata/badlog).
func TestLogFieldsCheckerFinds(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the module")
	}
	pkgs := listPackages(t)
	dir, err := filepath.Abs(filepath.Join("testdata", "badlog"))
	if err != nil {
		t.Fatal(err)
	}
	bad := &goPackage{ImportPath: "badlog", Dir: dir, GoFiles: []string{"bad.go"}}
	problems, _ := checkPackages(t, []*goPackage{bad}, pkgs)
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		`bad.go:15: key "level" is one slog writes itself`,
		`bad.go:16: a value of type []string`,
		`bad.go:18: key "n" twice in one call`,
		`bad.go:20: attributes spread from a slice`,
		`bad.go:21: a value of type badlog.kind`,
		`bad.go:22: key "Bad-Key" is not snake_case`,
		`bad.go:23: a log attribute key that is not a constant string`,
		`bad.go:27: key "count" twice in one call`,
		`bad.go:28: a value of type struct{}`,
		`log field "duration" has several JSON types:`,
		`log field "component" has several JSON types:`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("not reported: %s", want)
		}
	}
	if strings.Contains(all, `"ops" has several`) || strings.Contains(all, "bad.go:17") || strings.Contains(all, "bad.go:26") {
		t.Errorf("reported what is right:\n%s", all)
	}
	if t.Failed() {
		t.Logf("reported:\n%s", all)
	}
}

// checkPackages checks the logging calls of each package and the JSON
// type of each field name across them; it returns the problems and how
// many field names there are.
func checkPackages(t *testing.T, check []*goPackage, pkgs map[string]*goPackage) ([]string, int) {
	t.Helper()
	types := map[string]map[string][]string{} // key → JSON type → places
	var problems []string
	for _, p := range check {
		keys, probs := checkPackage(t, p, pkgs)
		problems = append(problems, probs...)
		for k, byType := range keys {
			if types[k] == nil {
				types[k] = map[string][]string{}
			}
			for ty, places := range byType {
				types[k][ty] = append(types[k][ty], places...)
			}
		}
	}
	for _, k := range sortedKeys(types) {
		if len(types[k]) > 1 {
			var b strings.Builder
			for _, ty := range sortedKeys(types[k]) {
				fmt.Fprintf(&b, "\n\t\t%s at %s", ty, strings.Join(types[k][ty], ", "))
			}
			problems = append(problems, fmt.Sprintf("log field %q has several JSON types:%s", k, b.String()))
		}
	}
	return problems, len(types)
}

type goPackage struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	Imports    []string
	Module     *struct{ Main bool }
	main       bool
}

// listPackages lists the module's packages and their dependencies, with
// the export data the type checker imports them from.
func listPackages(t *testing.T) map[string]*goPackage {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	cmd := exec.Command("go", "list", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,Imports,Module", "./...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]*goPackage{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		p.main = p.Module != nil && p.Module.Main
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

func checkPackage(t *testing.T, p *goPackage, pkgs map[string]*goPackage) (map[string]map[string][]string, []string) {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		q, ok := pkgs[path]
		if !ok || q.Export == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(q.Export)
	})
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: imp}
	if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
		t.Fatalf("type-checking %s: %v", p.ImportPath, err)
	}
	c := &fieldChecker{fset: fset, info: info, keys: map[string]map[string][]string{}}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				c.call(call)
			}
			return true
		})
	}
	return c.keys, c.problems
}

type fieldChecker struct {
	fset     *token.FileSet
	info     *types.Info
	keys     map[string]map[string][]string
	problems []string
}

var keyStyle = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// kvStart is where the key-value pairs start in the arguments of slog's
// logging functions and *slog.Logger's methods.
var kvStart = map[string]int{
	"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
	"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
	"Log": 3, "With": 0,
}

// attrTypes are slog's Attr constructors and the JSON type of their value
// ("" for Any: the value's).
var attrTypes = map[string]string{
	"String": "string", "Int": "number", "Int64": "number", "Uint64": "number", "Float64": "number",
	"Bool": "boolean", "Time": "string", "Duration": "string", "Any": "", "Group": "object",
}

func (c *fieldChecker) call(call *ast.CallExpr) {
	fn := c.callee(call)
	if fn == nil || fn.Pkg() == nil || fn.Pkg().Path() != "log/slog" {
		return
	}
	sig := fn.Type().(*types.Signature)
	name := fn.Name()
	logger := sig.Recv() != nil && strings.HasSuffix(sig.Recv().Type().String(), "slog.Logger")
	switch {
	case logger || sig.Recv() == nil && kvStart[name] > 0:
		if name == "LogAttrs" {
			// []slog.Attr: each built by a constructor, checked there;
			// here only that no key is given twice.
			seen := map[string]bool{}
			for _, a := range call.Args[min(3, len(call.Args)):] {
				if k, ok := c.attrKey(a); ok {
					if seen[k] {
						c.fail(a, "key %q twice in one call", k)
					}
					seen[k] = true
				}
			}
			return
		}
		start, ok := kvStart[name]
		if !ok {
			return
		}
		c.pairs(call, start)
	case sig.Recv() == nil:
		ty, ok := attrTypes[name]
		if !ok || len(call.Args) < 1 {
			return
		}
		key, ok := c.key(call.Args[0])
		if !ok {
			return
		}
		if ty == "" && len(call.Args) > 1 {
			ty = c.valueType(call.Args[1])
		}
		c.record(key, ty, call)
	}
}

func (c *fieldChecker) callee(call *ast.CallExpr) *types.Func {
	switch f := call.Fun.(type) {
	case *ast.SelectorExpr:
		if sel, ok := c.info.Selections[f]; ok {
			fn, _ := sel.Obj().(*types.Func)
			return fn
		}
		fn, _ := c.info.Uses[f.Sel].(*types.Func)
		return fn
	case *ast.Ident:
		fn, _ := c.info.Uses[f].(*types.Func)
		return fn
	}
	return nil
}

func (c *fieldChecker) pos(n ast.Node) string {
	p := c.fset.Position(n.Pos())
	return fmt.Sprintf("%s:%d", filepath.Join(filepath.Base(filepath.Dir(p.Filename)), filepath.Base(p.Filename)), p.Line)
}

func (c *fieldChecker) fail(n ast.Node, format string, args ...any) {
	c.problems = append(c.problems, c.pos(n)+": "+fmt.Sprintf(format, args...))
}

// pairs checks the key-value arguments of a logging call from start.
func (c *fieldChecker) pairs(call *ast.CallExpr, start int) {
	if call.Ellipsis.IsValid() {
		c.fail(call, "attributes spread from a slice: their keys cannot be checked; pass key-value pairs, or build []slog.Attr and call LogAttrs")
		return
	}
	seen := map[string]bool{}
	args := call.Args
	for i := start; i < len(args); i++ {
		if tv, ok := c.info.Types[args[i]]; ok && types.TypeString(tv.Type, nil) == "log/slog.Attr" {
			k, ok := c.attrKey(args[i])
			if !ok {
				c.fail(args[i], "an slog.Attr that is not built here: its key cannot be checked")
				continue
			}
			if seen[k] {
				c.fail(args[i], "key %q twice in one call", k)
			}
			seen[k] = true
			continue // the constructor is checked on its own
		}
		key, ok := c.key(args[i])
		if !ok {
			return
		}
		if seen[key] {
			c.fail(args[i], "key %q twice in one call", key)
		}
		seen[key] = true
		if i+1 >= len(args) {
			c.fail(args[i], "key %q without a value", key)
			return
		}
		c.record(key, c.valueType(args[i+1]), args[i+1])
		i++
	}
}

// attrKey is the constant key of e when e is a call of one of slog's Attr
// constructors.
func (c *fieldChecker) attrKey(e ast.Expr) (string, bool) {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	fn := c.callee(call)
	if fn == nil || fn.Pkg() == nil || fn.Pkg().Path() != "log/slog" {
		return "", false
	}
	if _, ok := attrTypes[fn.Name()]; !ok {
		return "", false
	}
	tv, ok := c.info.Types[call.Args[0]]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
		return "", false
	}
	return constant.StringVal(tv.Value), true
}

// key returns the constant string key e, reporting one that is not.
func (c *fieldChecker) key(e ast.Expr) (string, bool) {
	tv, ok := c.info.Types[e]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
		c.fail(e, "a log attribute key that is not a constant string")
		return "", false
	}
	s := constant.StringVal(tv.Value)
	switch {
	case reserved[s]:
		c.fail(e, "key %q is one slog writes itself (name the field, e.g. block_level)", s)
	case !keyStyle.MatchString(s):
		c.fail(e, "key %q is not snake_case", s)
	}
	return s, true
}

func (c *fieldChecker) record(key, ty string, n ast.Node) {
	if ty == "" {
		return // reported by valueType
	}
	if c.keys[key] == nil {
		c.keys[key] = map[string][]string{}
	}
	c.keys[key][ty] = append(c.keys[key][ty], c.pos(n))
}

var errorType = types.Universe.Lookup("error").Type().Underlying().(*types.Interface)

// valueType is the JSON type the handler writes for e's value, or "" (and
// a problem) when its text and JSON forms may differ.
func (c *fieldChecker) valueType(e ast.Expr) string {
	tv, ok := c.info.Types[e]
	if !ok {
		c.fail(e, "a value of unknown type")
		return ""
	}
	t := tv.Type
	switch types.TypeString(t, nil) {
	case "time.Duration", "time.Time":
		return "string"
	}
	if b, ok := t.(*types.Basic); ok { // predeclared, not a named type
		switch {
		case b.Info()&types.IsString != 0:
			return "string"
		case b.Info()&types.IsBoolean != 0:
			return "boolean"
		case b.Info()&types.IsNumeric != 0:
			return "number"
		}
	}
	if types.Implements(t, errorType) {
		return "string" // the handler writes err.Error()
	}
	c.fail(e, "a value of type %s: its JSON and text forms may differ; pass a string (.String()), a number, a bool, a time.Duration, a time.Time or an error",
		types.TypeString(t, nil))
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
