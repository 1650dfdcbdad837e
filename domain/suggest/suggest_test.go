package suggest

import (
	"slices"
	"strings"
	"testing"
)

var kinds = []string{"attestation", "attestation_with_dal", "block", "generic", "pack", "preattestation"}

func TestFor(t *testing.T) {
	drivers := []string{"confidentialspace", "file", "mem", "nitro"}
	commands := []string{"serve", "generate", "import", "list", "list-requests", "list-ops", "watermarks", "version", "help", "completion"}
	for _, tc := range []struct {
		name  string
		known []string
		want  []string
	}{
		{"attestaton", kinds, []string{"attestation"}},                    // a letter left out
		{"atestation", kinds, []string{"attestation"}},                    // another
		{"attsetation", kinds, []string{"attestation"}},                   // two letters swapped
		{"Attestation", kinds, []string{"attestation"}},                   // case
		{"attestation-with-dal", kinds, []string{"attestation_with_dal"}}, // separators
		{"preatestation", kinds, []string{"preattestation"}},
		{"blok", kinds, []string{"block"}},
		{"blocks", kinds, []string{"block"}},
		{"generc", kinds, []string{"generic"}},
		{"gen", kinds, []string{"generic"}}, // a truncated name
		{"packs", kinds, []string{"pack"}},
		{"confidentalspace", drivers, []string{"confidentialspace"}},
		{"confidential_space", drivers, []string{"confidentialspace"}},
		{"confidential-space", drivers, []string{"confidentialspace"}},
		{"nitor", drivers, []string{"nitro"}},
		{"flie", drivers, []string{"file"}},
		{"memory", drivers, nil}, // too far from mem
		{"servee", commands, []string{"serve"}},
		{"sevre", commands, []string{"serve"}},
		{"lsit", commands, []string{"list"}},
		{"lists-ops", commands, []string{"list-ops"}},
		{"watermark", commands, []string{"watermarks"}},
		{"improt", commands, []string{"import"}},
		{"verison", commands, []string{"version"}},
		// Nothing close, nothing suggested.
		{"azure", drivers, nil},
		{"transfer", kinds, nil},
		{"", kinds, nil},
		{"x", kinds, nil},
		// The name itself is never suggested.
		{"block", kinds, nil},
	} {
		got := For(tc.name, tc.known)
		if !slices.Equal(got, tc.want) {
			t.Errorf("For(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestForSeveral(t *testing.T) {
	got := For("host", []string{"port", "host_name", "hosts", "post", "ghost"})
	// Distance 1: ghost, hosts, post; port is 2 away and host_name a
	// prefix match: only the closest are suggested.
	if want := []string{"ghost", "hosts", "post"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := For("host", []string{"host_name", "ports"}); !slices.Equal(got, []string{"host_name"}) {
		t.Fatalf("got %q: a prefix match when nothing is close", got)
	}
	if got := For("host", []string{"host_name", "hosts"}); !slices.Equal(got, []string{"hosts"}) {
		t.Fatalf("got %q: the prefix match only when nothing is closer", got)
	}
	if got := For("hos", []string{"host_name", "hosts_file", "port"}); !slices.Equal(got, []string{"host_name", "hosts_file"}) {
		t.Fatalf("got %q", got)
	}
	if p := Phrase("host", []string{"port", "hosts", "post", "ghost", "most"}); p != " (did you mean ghost, hosts or most?)" {
		t.Fatalf("phrase %q", p)
	}
	if p := Phrase("attestaton", kinds); p != " (did you mean attestation?)" {
		t.Fatalf("phrase %q", p)
	}
	if h := Hint("attestaton", kinds, "known: a, b"); h != " (did you mean attestation? known: a, b)" {
		t.Fatalf("hint %q", h)
	}
	if h := Hint("zzz", kinds, "known: a, b"); h != " (known: a, b)" {
		t.Fatalf("hint %q", h)
	}
	if h := Hint("attestaton", kinds, ""); h != " (did you mean attestation?)" {
		t.Fatalf("hint %q", h)
	}
	if p := Phrase("zzz", kinds); p != "" {
		t.Fatalf("phrase %q", p)
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"abc", "abc", 0},
		{"abc", "acb", 1}, {"abc", "ab", 1}, {"abc", "xbc", 1},
		{"kitten", "sitting", 3}, {"ca", "abc", 3}, {"éa", "aé", 1},
	} {
		if got := distance(tc.a, tc.b, 10); got != tc.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := distance(tc.b, tc.a, 10); got != tc.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
		if tc.want > 1 {
			if got := distance(tc.a, tc.b, 1); got != 2 {
				t.Errorf("distance(%q, %q) with limit 1 = %d, want 2 (limit+1)", tc.a, tc.b, got)
			}
		}
	}
}

// FuzzFor: whatever the name, For returns only names of the known list
// (never the name given, which may be a value typed in the wrong place),
// distinct, at most MaxSuggestions of them, and never panics.
func FuzzFor(f *testing.F) {
	f.Add("attestaton", "block,attestation,generic")
	f.Add("edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbq", "mem,file")
	f.Add("", ",a,")
	f.Fuzz(func(t *testing.T, name, list string) {
		known := strings.Split(list, ",")
		got := For(name, known)
		if len(got) > MaxSuggestions {
			t.Fatalf("%d suggestions", len(got))
		}
		for i, s := range got {
			if !slices.Contains(known, s) {
				t.Fatalf("suggested %q, not a known name", s)
			}
			if s == name {
				t.Fatalf("suggested the name itself")
			}
			if slices.Contains(got[:i], s) {
				t.Fatalf("suggested %q twice", s)
			}
		}
		p := Phrase(name, known)
		if (p == "") != (len(got) == 0) {
			t.Fatalf("phrase %q for suggestions %q", p, got)
		}
	})
}
