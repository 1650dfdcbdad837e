// Package suggest finds, for a name that is not known (a misspelt request
// kind, driver, configuration field or command), the known names it was
// probably meant to be, for the "did you mean" of an error message. It only
// ever returns names from the known list, never the text it was given.
package suggest

import (
	"slices"
	"strings"
)

// MaxSuggestions bounds how many names For returns.
const MaxSuggestions = 3

// For returns the names of known closest to name: those equal to it but
// for case and the separators '-' and '_'; else those at the smallest edit
// distance (insertions, deletions, substitutions and transpositions of
// adjacent characters) within a bound (1 for names of up to 4 characters,
// 2 up to 8, 3 beyond); else those that name starts (a truncated name of
// at least 3 characters). Names equal to name are not suggested. At most
// MaxSuggestions names are returned, sorted; nil when none is close.
func For(name string, known []string) []string {
	n := fold(name)
	if n == "" {
		return nil
	}
	limit := threshold(len([]rune(n)))
	type cand struct {
		name string
		dist int
	}
	var cands []cand
	for _, k := range known {
		if k == name || k == "" {
			continue
		}
		f := fold(k)
		d := distance(n, f, limit)
		switch {
		case d <= limit:
		case len(n) >= 3 && strings.HasPrefix(f, n):
			d = limit + 1 // after every edit-distance match
		default:
			continue
		}
		if !slices.ContainsFunc(cands, func(c cand) bool { return c.name == k }) {
			cands = append(cands, cand{k, d})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(a.name, b.name)
	})
	var out []string
	for _, c := range cands {
		if c.dist > cands[0].dist || len(out) == MaxSuggestions {
			break // only the closest
		}
		out = append(out, c.name)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Phrase returns " (did you mean X?)", " (did you mean X or Y?)", … for the
// suggestions of name among known, or "" when there is none.
func Phrase(name string, known []string) string {
	s := For(name, known)
	switch len(s) {
	case 0:
		return ""
	case 1:
		return " (did you mean " + s[0] + "?)"
	}
	return " (did you mean " + strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1] + "?)"
}

// Hint returns " (did you mean X? LIST)" with the suggestions of name
// among known, or " (LIST)" when there is none; list describes the known
// names (e.g. "known: a, b, c"). With an empty list, it is Phrase.
func Hint(name string, known []string, list string) string {
	p := Phrase(name, known)
	switch {
	case list == "":
		return p
	case p == "":
		return " (" + list + ")"
	}
	return strings.TrimSuffix(p, ")") + " " + list + ")"
}

// threshold is the largest edit distance still suggested for a name of n
// characters.
func threshold(n int) int {
	switch {
	case n <= 4:
		return 1
	case n <= 8:
		return 2
	}
	return 3
}

// fold lowercases s and maps '-' to '_'.
func fold(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_")
}

// maxLen bounds the names compared: a longer name is suggested nothing
// (the distance is quadratic in the lengths).
const maxLen = 256

// distance is the optimal string alignment distance between a and b (the
// Levenshtein distance with transpositions of adjacent characters), or
// limit+1 as soon as it is known to exceed limit.
func distance(a, b string, limit int) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > maxLen || len(rb) > maxLen {
		return limit + 1
	}
	if d := len(ra) - len(rb); d > limit || -d > limit {
		return limit + 1
	}
	// Three rows: the one before the previous (for transpositions), the
	// previous and the current.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		best := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			best = min(best, v)
		}
		if best > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return min(prev[len(rb)], limit+1)
}
