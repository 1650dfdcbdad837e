package promcheck

import (
	"reflect"
	"testing"
)

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="sigil"} == 0`, []string{`up{job="sigil"}`}},
		{`histogram_quantile(0.99, sum by (instance, address, le) (rate(sigil_sign_request_duration_seconds_bucket{status="200"}[5m]))) > 0.5`,
			[]string{`sigil_sign_request_duration_seconds_bucket{status="200"}`}},
		{`sum by (instance) (rate(a_total{status=~"5.."}[5m])) / sum by (instance) (rate(a_total[5m])) > 0.05`,
			[]string{`a_total{status=~"5.."}`, `a_total`}},
		{`time() - last_ts > 900`, []string{`last_ts`}},
		{`sum(x) by (le) or on (instance) group_left (vault) y {a="}{[", b='x'} offset 5m unless z`,
			[]string{`x`, `y{a="}{[", b='x'}`, `z`}},
		{`label_replace(m{a="b"}, "dst", "$1", "src", "(.*)")`, []string{`m{a="b"}`}},
		{`rate(m[5m:1m]) > bool 1e3 and inf > 0`, []string{`m`}},
	} {
		got, err := Selectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Selectors(%s) = %q, want %q", tc.expr, got, tc.want)
		}
	}
	if _, err := Selectors(`m{a="b"`); err == nil {
		t.Error("an unclosed matcher was accepted")
	}
	if _, err := Selectors(`m{a="b}`); err == nil {
		t.Error("an unterminated string was accepted")
	}
}

func TestBoolComparisons(t *testing.T) {
	for in, want := range map[string]string{
		`up{job="sigil"} == 0`:                   `up{job="sigil"} == bool 0`,
		`a > 0.05`:                               `a > bool 0.05`,
		`a > bool 1`:                             `a > bool 1`,
		`x{s!="a", t=~"b"} != 1 or y <= 2`:       `x{s!="a", t=~"b"} != bool 1 or y <= bool 2`,
		"a >= 1\n  or b < 2":                     "a >= bool 1\n  or b < bool 2",
		`label_replace(m, "d", "a>b", "s", "x")`: `label_replace(m, "d", "a>b", "s", "x")`,
	} {
		got, err := BoolComparisons(in)
		if err != nil || got != want {
			t.Errorf("BoolComparisons(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"instance": ".*", "__rate_interval": "1m"}
	got := Substitute(`rate(m{instance=~"$instance", a=~"${address}"}[$__rate_interval]) + ${instance:regex}`, vars)
	want := `rate(m{instance=~".*", a=~"${address}"}[1m]) + .*`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
