package signatorydiff

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/integration/harness"
)

// TestAgainstSignatory runs every scenario on Signatory and Sigil and fails
// on any difference the allow-list does not name, and on any allow-list
// entry that no longer matches a difference (of the scenarios run). The
// table of every difference is logged; SIGNATORYDIFF_REPORT=<file> also
// writes it there.
func TestAgainstSignatory(t *testing.T) {
	harness.SkipIfShort(t)
	allow := loadAllowList(t)
	e := &env{c: loadCorpus(t), names: map[string]string{}}
	for n, k := range e.c.Keys {
		e.names[k.PKH], e.names[k.PK] = n, n
	}
	e.bins.sigil = harness.BuildBinary(t, "./cmd/sigil")
	b := buildSignatory(t, t.TempDir())
	e.bins.signatory, e.bins.signatoryCLI = b.serve, b.cli

	// The CLI's lists of kinds, and the generic kinds both accept.
	ops := e.compareLists(t, "list-ops")
	e.compareLists(t, "list-requests")
	for _, k := range ops[1] {
		if slices.Contains(ops[0], k) {
			e.genericKinds = append(e.genericKinds, k)
		}
	}

	// One file vault, in Signatory's format (octez-client's secret_keys).
	type vaultEntry struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	var vault []vaultEntry
	for _, k := range vaultKeys {
		vault = append(vault, vaultEntry{Name: k, Value: "unencrypted:" + e.c.key(k).SK})
	}
	raw, _ := json.Marshal(vault)
	e.vaultPath = filepath.Join(t.TempDir(), "secret_keys.json")
	if err := os.WriteFile(e.vaultPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	e.hook = startHook(t, e)

	ran := map[string]bool{"cli": true}
	for _, sc := range e.scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			ran[sc.name] = true
			e.run(t, sc)
		})
	}
	e.judge(t, allow, ran)
}

// compareLists runs `list-ops` or `list-requests` of both CLIs and records
// the kinds only one lists; it returns both lists.
func (e *env) compareLists(t *testing.T, verb string) [2][]string {
	var lists [2][]string
	for i, bin := range []string{e.bins.signatoryCLI, e.bins.sigil} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, verb).Output()
		cancel()
		if err != nil {
			t.Fatalf("%s %s: %v", programs[i], verb, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if k, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "- "); ok {
				lists[i] = append(lists[i], k)
			}
		}
		if len(lists[i]) == 0 {
			t.Fatalf("%s %s listed nothing:\n%s", programs[i], verb, out)
		}
		slices.Sort(lists[i])
	}
	for _, k := range lists[0] {
		if !slices.Contains(lists[1], k) {
			e.record("cli", verb+"/"+k, "listed", "yes", "no")
		}
	}
	for _, k := range lists[1] {
		if !slices.Contains(lists[0], k) {
			e.record("cli", verb+"/"+k, "listed", "no", "yes")
		}
	}
	return lists
}

// run starts both daemons on the scenario's configuration, compares
// whether they start, sends every case to both and compares the answers,
// then their metrics.
func (e *env) run(t *testing.T, sc scenario) {
	base := t.TempDir()
	dirs := [2]string{filepath.Join(base, "signatory"), filepath.Join(base, "sigil")}
	if len(sc.handover) > 0 {
		shared := filepath.Join(base, "handover")
		d := e.startDaemon(t, "signatory", sc.config, shared)
		if !d.running() {
			t.Fatalf("Signatory refused the handover configuration: %s", d.refused)
		}
		for _, cs := range sc.handover {
			if o := e.do(d, d, cs); o.status != http.StatusOK {
				t.Fatalf("handover: Signatory alone answered %s to %s: %s", statusText(o), cs.name, o.body)
			}
		}
		d.stop()
		for _, dir := range dirs {
			copyDir(t, shared, dir)
		}
	}
	var ds [2]*daemon
	for i, p := range programs {
		ds[i] = e.startDaemon(t, p, sc.config, dirs[i])
	}
	state := func(d *daemon) string {
		if d.refused != "" {
			return d.refused
		}
		return "started"
	}
	if sc.startOnly || !ds[0].running() || !ds[1].running() {
		if (ds[0].refused == "") != (ds[1].refused == "") {
			e.record(sc.name, "start", "start", state(ds[0]), state(ds[1]))
		}
		if !sc.startOnly {
			t.Logf("not both started (Signatory: %s; Sigil: %s): no request sent", state(ds[0]), state(ds[1]))
		}
		for _, d := range ds {
			d.stop()
		}
		return
	}
	// Metrics: the series at start in full, then what each case changed
	// (compared case by case, so that a count differs only where an answer
	// does), then the families present at the end.
	var fams [2]map[string]*family
	scrapeBoth := func() {
		for i, d := range ds {
			fams[i] = e.scrape(t, d)
		}
	}
	scrapeBoth()
	e.compareMetrics(sc.name, "metrics at start/", fams[0], fams[1], true)
	atStart := map[string]bool{}
	for _, f := range fams {
		for n := range f {
			atStart[n] = true
		}
	}
	for _, cs := range sc.cases {
		s := e.do(ds[0], ds[1], cs)
		g := e.do(ds[1], ds[0], cs)
		e.compare(sc.name, cs, s, g)
		before := fams
		scrapeBoth()
		e.compareDeltas(sc.name, cs.name, before, fams)
	}
	// Families that appeared during the traffic: present in both, same
	// type and label names.
	for i := range fams {
		for n := range fams[i] {
			if atStart[n] {
				delete(fams[i], n)
			}
		}
	}
	e.compareMetrics(sc.name, "metrics/", fams[0], fams[1], false)
	for _, d := range ds {
		d.stop()
	}
}

// scrape reads a daemon's /metrics; the daemon must still be running.
func (e *env) scrape(t *testing.T, d *daemon) map[string]*family {
	t.Helper()
	if !d.running() {
		t.Fatalf("%s exited during the scenario:\n%s", d, d.proc.Tail(40))
	}
	resp, err := client.Get(d.utility + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", d, err)
	}
	defer resp.Body.Close()
	f, err := parseExposition(resp.Body)
	if err != nil {
		t.Fatalf("%s /metrics: %v", d, err)
	}
	return f
}

// copyDir copies a directory tree of regular files (a base directory).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if de.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// verdicts is the outcome of matching the differences against the
// allow-list.
type verdicts struct {
	rows    [][]string // verdict, scenario, case, field, Signatory, Sigil
	fresh   []diff     // matched by no entry
	pending int        // matched by a pending entry
	stale   []string   // entries (of scenarios that ran) that matched nothing
}

// classify gives each difference the first entry matching it. A metric
// difference of a case (field "metric …") that no entry matches follows
// the entry of the case's status difference, if it has one: a request
// answered differently is counted differently. Every other metric
// difference — a count that differs where the answers agree — needs its
// own entry.
func classify(diffs []diff, allow []*allowEntry, ran map[string]bool) verdicts {
	var v verdicts
	used := make([]int, len(allow))
	find := func(d diff) int {
		for i, a := range allow {
			if a.matches(d) {
				return i
			}
		}
		return -1
	}
	statusEntry := map[[2]string]int{}
	for _, d := range diffs {
		if d.Field == "status" {
			statusEntry[[2]string{d.Scenario, d.Case}] = find(d)
		}
	}
	for _, d := range diffs {
		i, verdict := find(d), ""
		if i < 0 && strings.HasPrefix(d.Field, "metric ") {
			if j, ok := statusEntry[[2]string{d.Scenario, d.Case}]; ok && j >= 0 {
				i, verdict = j, "follows "
			}
		}
		switch {
		case i < 0:
			verdict = "NEW"
			v.fresh = append(v.fresh, d)
		case allow[i].Pending != "":
			used[i]++
			v.pending++
			verdict += "pending " + allow[i].ID
		default:
			used[i]++
			verdict += "documented " + allow[i].ID
		}
		v.rows = append(v.rows, []string{verdict, d.Scenario, d.Case, d.Field, d.Signatory, d.Sigil})
	}
	for i, a := range allow {
		if used[i] > 0 {
			continue
		}
		for sc := range ran {
			if a.res[0].MatchString(sc) {
				v.stale = append(v.stale, fmt.Sprintf("%s (%s: %s)", a.ID, orNone(a.line), a.Note))
				break
			}
		}
	}
	return v
}

// judge logs the table of every difference with its verdict, and fails on
// differences not listed and on entries (of scenarios that ran) that
// matched nothing.
func (e *env) judge(t *testing.T, allow []*allowEntry, ran map[string]bool) {
	v := classify(e.diffs, allow, ran)
	header := []string{"verdict", "scenario", "case", "field", "Signatory v1.4.0", "Sigil"}
	summary := fmt.Sprintf("%d cases sent to both; %d signatures valid from both, %d of them (Ed25519, BLS) compared for equality; "+
		"%d differences: %d new, %d pending, %d documented; %d allow-list entries, %d matched nothing",
		e.stats.cases, e.stats.bothValid, e.stats.equalChecked,
		len(e.diffs), len(v.fresh), v.pending, len(e.diffs)-len(v.fresh)-v.pending, len(allow), len(v.stale))
	t.Logf("Signatory v1.4.0 vs Sigil — %s\n%s", summary, table(header, v.rows, 100))
	if p := os.Getenv("SIGNATORYDIFF_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(summary+"\n\n"+table(header, v.rows, 0)), 0o644); err != nil {
			t.Errorf("writing %s: %v", p, err)
		}
	}
	if len(v.fresh) > 0 {
		var b strings.Builder
		for _, d := range v.fresh {
			fmt.Fprintf(&b, "  %s | %s | %s: Signatory %q, Sigil %q\n", d.Scenario, d.Case, d.Field, d.Signatory, d.Sigil)
		}
		t.Errorf("%d differences are neither fixed nor in %s (add an entry quoting the line of docs/migrating-from-signatory.md that documents each, or fix Sigil):\n%s",
			len(v.fresh), allowListPath, b.String())
	}
	if len(v.stale) > 0 {
		t.Errorf("allow-list entries that match no difference any more (remove them, and their line in the guide if the difference is gone):\n  %s",
			strings.Join(v.stale, "\n  "))
	}
}
