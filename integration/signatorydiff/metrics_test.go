package signatorydiff

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// family is one metric family of a Prometheus text exposition.
type family struct {
	typ    string
	series map[string]*series // by rendered label set (le excluded)
}

type series struct {
	labels map[string]string
	// value is a counter's or gauge's value, a histogram's or summary's
	// count.
	value float64
}

// parseExposition reads the text exposition format: # TYPE lines and
// samples name{labels} value. Histogram and summary samples are folded
// into their family; only _count is kept as the series value.
func parseExposition(r io.Reader) (map[string]*family, error) {
	fams := map[string]*family{}
	get := func(name string) *family {
		f := fams[name]
		if f == nil {
			f = &family{series: map[string]*series{}}
			fams[name] = f
		}
		return f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				return nil, fmt.Errorf("malformed TYPE line %q", line)
			}
			get(f[0]).typ = f[1]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		fam, suffix := name, ""
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok {
				if f := fams[base]; f != nil && (f.typ == "histogram" || f.typ == "summary") {
					fam, suffix = base, suf
				}
			}
		}
		f := get(fam)
		if suffix == "_bucket" || suffix == "_sum" {
			continue
		}
		delete(labels, "quantile")
		key := renderLabels(labels, nil)
		s := f.series[key]
		if s == nil {
			s = &series{labels: labels}
			f.series[key] = s
		}
		s.value = value
	}
	return fams, sc.Err()
}

// parseSample splits `name{a="x",b="y"} value [timestamp]`.
func parseSample(line string) (string, map[string]string, float64, error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, 0, fmt.Errorf("malformed sample %q", line)
	}
	name, rest := line[:i], line[i:]
	labels := map[string]string{}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return "", nil, 0, fmt.Errorf("malformed labels in %q", line)
			}
			key := rest[:eq]
			var val strings.Builder
			j := eq + 2
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[j])
					}
					continue
				}
				val.WriteByte(rest[j])
			}
			if j >= len(rest) {
				return "", nil, 0, fmt.Errorf("unterminated label value in %q", line)
			}
			labels[key] = val.String()
			rest = rest[j+1:]
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 {
		return "", nil, 0, fmt.Errorf("sample without value %q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", nil, 0, fmt.Errorf("sample value in %q: %v", line, err)
	}
	return name, labels, v, nil
}

// renderLabels renders a label set sorted by name, with name() applied to
// values (key hashes become corpus names).
func renderLabels(labels map[string]string, name func(string) string) string {
	var keys []string
	for k := range labels {
		if k != "le" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		v := labels[k]
		if name != nil {
			v = name(v)
		}
		fmt.Fprintf(&b, "%s=%q", k, v)
	}
	b.WriteString("}")
	return b.String()
}

// isRuntimeFamily reports the families of the standard Go, process and
// promhttp collectors (compared by presence, type and label names only: no
// Signatory code decides their values).
func isRuntimeFamily(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_")
}

// compareMetrics records the differences between the two expositions:
// families present in one only, their types and label names; with full,
// for Signatory's own families (everything but the runtime collectors and
// Sigil's sigil_* families) also the set of values of each label and, when
// all sets agree, each series' value or observation count. Cases are named
// prefix + family.
func (e *env) compareMetrics(scenario, prefix string, s, g map[string]*family, full bool) {
	var names []string
	for n := range s {
		names = append(names, n)
	}
	for n := range g {
		if _, ok := s[n]; !ok && !strings.HasPrefix(n, "sigil_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		cs := prefix + n
		fs, fg := s[n], g[n]
		if fs == nil || fg == nil {
			e.record(scenario, cs, "family", presence(fs), presence(fg))
			continue
		}
		if fs.typ != fg.typ {
			e.record(scenario, cs, "type", fs.typ, fg.typ)
			continue
		}
		ls, lg := labelNames(fs), labelNames(fg)
		if !slices.Equal(ls, lg) {
			e.record(scenario, cs, "label names", strings.Join(ls, ","), strings.Join(lg, ","))
			continue
		}
		if isRuntimeFamily(n) || !full {
			continue
		}
		same := true
		for _, l := range ls {
			vs, vg := e.labelValues(fs, l), e.labelValues(fg, l)
			if vs != vg {
				e.record(scenario, cs, "label "+l, vs, vg)
				same = false
			}
		}
		if !same {
			continue
		}
		keys := map[string]bool{}
		rs, rg := e.byRendered(fs), e.byRendered(fg)
		for k := range rs {
			keys[k] = true
		}
		for k := range rg {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			a, b := rs[k], rg[k]
			if a == nil || b == nil || a.value != b.value {
				e.record(scenario, cs, "series "+k, seriesValue(a), seriesValue(b))
			}
		}
	}
}

func presence(f *family) string {
	if f == nil {
		return "absent"
	}
	return "present (" + f.typ + ")"
}

func labelNames(f *family) []string {
	set := map[string]bool{}
	for _, s := range f.series {
		for k := range s.labels {
			if k != "le" && k != "quantile" {
				set[k] = true
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (e *env) labelValues(f *family, label string) string {
	set := map[string]bool{}
	for _, s := range f.series {
		set[e.name(s.labels[label])] = true
	}
	var out []string
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return "[" + strings.Join(out, ", ") + "]"
}

func (e *env) byRendered(f *family) map[string]*series {
	out := map[string]*series{}
	for _, s := range f.series {
		out[renderLabels(s.labels, e.name)] = s
	}
	return out
}

func seriesValue(s *series) string {
	if s == nil {
		return "absent"
	}
	return strconv.FormatFloat(s.value, 'g', -1, 64)
}

// compareDeltas records, for one case, every series of Signatory's own
// families (not the runtime collectors, not sigil_*) whose change during
// the case differs between the two daemons: field "metric <family>
// <labels>", values the changes ("+1", "0").
func (e *env) compareDeltas(scenario, cs string, before, after [2]map[string]*family) {
	var deltas [2]map[string]float64
	for i := range deltas {
		deltas[i] = map[string]float64{}
		for n, f := range after[i] {
			if isRuntimeFamily(n) || strings.HasPrefix(n, "sigil_") {
				continue
			}
			prev := map[string]float64{}
			if b := before[i][n]; b != nil {
				for _, s := range b.series {
					prev[renderLabels(s.labels, e.name)] = s.value
				}
			}
			for _, s := range f.series {
				k := renderLabels(s.labels, e.name)
				if d := s.value - prev[k]; d != 0 {
					deltas[i][n+" "+k] = d
				}
			}
		}
	}
	keys := map[string]bool{}
	for i := range deltas {
		for k := range deltas[i] {
			keys[k] = true
		}
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if a, b := deltas[0][k], deltas[1][k]; a != b {
			e.record(scenario, cs, "metric "+k, signed(a), signed(b))
		}
	}
}

func signed(v float64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%+g", v)
}
