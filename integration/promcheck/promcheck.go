// Package promcheck checks Sigil's Grafana dashboard and Prometheus alert
// rules (deploy/) against the metrics a daemon really exports. It reads the
// dashboard's panel targets and the rule file's alert expressions,
// substitutes the dashboard's variables, finds the metric selectors of a
// PromQL expression with a small lexer (enough for the expressions we
// write: strings, label matchers, ranges, by/without/on/ignoring lists), and
// evaluates expressions and selectors through a Prometheus server's HTTP
// API (/api/v1/query), reporting every expression that returns no data and
// every selector that matches no series: a blank panel, a misspelled metric
// or label value, an alert that can never fire.
package promcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Expr is one expression to check, with where it comes from.
type Expr struct {
	Source string // "panel 3 \"Sign latency\" target B", "alert SigilDown"
	Expr   string
	// Alert is true for an alert rule's expression: comparisons are turned
	// into bool comparisons before it is evaluated (see BoolComparisons).
	Alert bool
}

// DashboardTargets returns the expression of every panel target of a
// Grafana dashboard JSON file (rows' nested panels included), with the
// dashboard's variables substituted by vars (see Substitute).
func DashboardTargets(path string, vars map[string]string) ([]Expr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Expr
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Expr{
					Source: fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, t.RefID),
					Expr:   Substitute(t.Expr, vars),
				})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

type panel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// AlertRules returns the expression of every alerting rule of a Prometheus
// rule file.
func AlertRules(path string) ([]Expr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Expr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, Expr{Source: "alert " + r.Alert, Expr: strings.TrimSpace(r.Expr), Alert: true})
			}
		}
	}
	return out, nil
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)`)

// Substitute replaces Grafana variables ($name, ${name}, ${name:fmt}) in
// expr by vars[name]; a variable missing from vars is left as is (and the
// expression will then fail to parse in Prometheus, which is reported).
func Substitute(expr string, vars map[string]string) string {
	return varRE.ReplaceAllStringFunc(expr, func(m string) string {
		sm := varRE.FindStringSubmatch(m)
		name := sm[1] + sm[2]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// token kinds of the lexer.
const (
	tokIdent = iota
	tokNumber
	tokString
	tokBraces   // {...}, label matchers
	tokBrackets // [...], a range or subquery
	tokOp       // an operator or punctuation
)

type token struct {
	kind int
	text string
	end  int // byte offset after the token
}

// lex splits a PromQL expression into tokens; label matchers and ranges
// are single tokens.
func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // comment to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			out = append(out, token{tokString, s[i:j], j})
			i = j
		case c == '{' || c == '[':
			closing := byte('}')
			kind := tokBraces
			if c == '[' {
				closing, kind = ']', tokBrackets
			}
			j := i + 1
			for j < len(s) && s[j] != closing {
				if s[j] == '"' || s[j] == '\'' || s[j] == '`' {
					k, err := skipString(s, j)
					if err != nil {
						return nil, err
					}
					j = k
					continue
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unclosed %c at offset %d", c, i)
			}
			out = append(out, token{kind, s[i : j+1], j + 1})
			i = j + 1
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			out = append(out, token{tokIdent, s[i:j], j})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < len(s) && (isIdentChar(s[j]) || s[j] == '.') {
				j++
			}
			out = append(out, token{tokNumber, s[i:j], j})
			i = j
		default:
			j := i + 1
			if i+1 < len(s) {
				switch s[i : i+2] {
				case "==", "!=", ">=", "<=", "=~", "!~":
					j = i + 2
				}
			}
			out = append(out, token{tokOp, s[i:j], j})
			i = j
		}
	}
	return out, nil
}

func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' && q != '`' {
			j++
			continue
		}
		if s[j] == q {
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d", i)
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// keywords are identifiers that are never metric names.
var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true, "start": true, "end": true,
	// Aggregation operators, which may be followed by "by (…)" before their
	// parenthesis.
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true,
	"limitk": true, "limit_ratio": true,
}

// labelLists are keywords followed by a parenthesized list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// Selectors returns the vector selectors of expr (metric name and label
// matchers, as written, without ranges), in order of appearance.
func Selectors(expr string) ([]string, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind != tokIdent {
			continue
		}
		next := func(k int) *token {
			if k < len(toks) {
				return &toks[k]
			}
			return nil
		}
		if labelLists[t.text] {
			// Skip the label list "( a, b )" if there is one.
			if n := next(i + 1); n != nil && n.text == "(" {
				j := i + 2
				for j < len(toks) && toks[j].text != ")" {
					j++
				}
				i = j
			}
			continue
		}
		if keywords[t.text] {
			continue
		}
		n := next(i + 1)
		if n != nil && n.text == "(" {
			continue // a function or an aggregation
		}
		sel := t.text
		if n != nil && n.kind == tokBraces {
			sel += n.text
			i++
		}
		out = append(out, sel)
	}
	return out, nil
}

// MetricNames returns the distinct metric names expr selects, sorted.
func MetricNames(expr string) ([]string, error) {
	sels, err := Selectors(expr)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range sels {
		name, _, _ := strings.Cut(s, "{")
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// BoolComparisons rewrites every comparison of expr (==, !=, >, <, >=,
// <=) outside label matchers into its bool form, so that the expression
// yields a 0 or 1 sample for each series it compares instead of filtering
// them out: an alert expression then returns data whenever its inputs
// exist, firing or not.
func BoolComparisons(expr string) (string, error) {
	toks, err := lex(expr)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	last := 0
	for i, t := range toks {
		if t.kind != tokOp {
			continue
		}
		switch t.text {
		case "==", "!=", ">", "<", ">=", "<=":
		default:
			continue
		}
		if i+1 < len(toks) && toks[i+1].text == "bool" {
			continue
		}
		b.WriteString(expr[last:t.end])
		b.WriteString(" bool")
		last = t.end
	}
	b.WriteString(expr[last:])
	return b.String(), nil
}

// Client queries a Prometheus server's HTTP API.
type Client struct {
	URL  string // e.g. http://127.0.0.1:9090
	HTTP *http.Client
}

// Sample is one element of a query result.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs an instant query at now and returns its vector (a scalar
// result is one sample without labels).
func (c *Client) Query(ctx context.Context, q string) ([]Sample, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/api/v1/query", strings.NewReader(url.Values{"query": {q}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %q: HTTP %d, undecodable reply: %w", q, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", q, r.ErrorType, r.Error)
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return nil, err
	}
	switch d.ResultType {
	case "vector":
		var v []Sample
		err := json.Unmarshal(d.Result, &v)
		return v, err
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(d.Result, &s); err != nil {
			return nil, err
		}
		return []Sample{{Value: s}}, nil
	}
	return nil, fmt.Errorf("query %q: unexpected result type %q", q, d.ResultType)
}

// Problem is an expression that does not pass.
type Problem struct {
	Source, Expr, Reason string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s\n    %s", p.Source, p.Reason, p.Expr) }

// Lookback is how far back a selector's series may have their last sample
// (last_over_time) to count as existing.
const Lookback = "1h"

// Check evaluates every expression (alert expressions with bool
// comparisons) and every selector in it, and returns the problems: a query
// Prometheus refuses, an expression that returns no data, a selector that
// matches no series.
func (c *Client) Check(ctx context.Context, exprs []Expr) []Problem {
	var out []Problem
	for _, e := range exprs {
		q := e.Expr
		if e.Alert {
			var err error
			if q, err = BoolComparisons(q); err != nil {
				out = append(out, Problem{e.Source, e.Expr, err.Error()})
				continue
			}
		}
		res, err := c.Query(ctx, q)
		switch {
		case err != nil:
			out = append(out, Problem{e.Source, q, err.Error()})
			continue
		case len(res) == 0:
			out = append(out, Problem{e.Source, q, "no data"})
		}
		sels, err := Selectors(e.Expr)
		if err != nil {
			out = append(out, Problem{e.Source, e.Expr, err.Error()})
			continue
		}
		if len(sels) == 0 && !strings.Contains(e.Expr, "time()") {
			out = append(out, Problem{e.Source, e.Expr, "no metric selector found"})
		}
		for _, s := range sels {
			res, err := c.Query(ctx, "count(last_over_time("+s+"["+Lookback+"]))")
			if err != nil {
				out = append(out, Problem{e.Source, e.Expr, fmt.Sprintf("selector %s: %v", s, err)})
			} else if len(res) == 0 {
				out = append(out, Problem{e.Source, e.Expr, fmt.Sprintf("selector %s matches no series", s)})
			}
		}
	}
	return out
}

// NoData evaluates every expression as a panel shows it and returns those
// that return no data (a panel showing NO DATA), without checking their
// selectors: on a healthy signer the series of refusals and errors do not
// exist yet, but every panel must still show a value (0).
func (c *Client) NoData(ctx context.Context, exprs []Expr) []Problem {
	var out []Problem
	for _, e := range exprs {
		res, err := c.Query(ctx, e.Expr)
		switch {
		case err != nil:
			out = append(out, Problem{e.Source, e.Expr, err.Error()})
		case len(res) == 0:
			out = append(out, Problem{e.Source, e.Expr, "no data"})
		}
	}
	return out
}
