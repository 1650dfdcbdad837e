package httpapi

import (
	"encoding/hex"
	"testing"
)

// The sign body is a JSON string of hex digits: the plain form is decoded
// directly, any other JSON spelling of the same string (escapes,
// surrounding space) through encoding/json; malformed bodies are 400s.
func TestDecodeHexString(t *testing.T) {
	for body, want := range map[string]string{
		`"03ab"`:             "03ab",
		" \n\"03AB\"\t":      "03ab",
		`"\u0030\u0033ab"`:   "03ab",
		`"0\u00333ab"`:       "",
		`"03a"`:              "",
		`"0x03"`:             "",
		`03ab`:               "",
		`"03ab`:              "",
		`["03ab"]`:           "",
		`"03ab" "04"`:        "",
		`"` + "\\\"" + `03"`: "",
	} {
		got, err := decodeHexString([]byte(body))
		if want == "" {
			if err == nil {
				t.Errorf("%q accepted as %x", body, got)
			}
			continue
		}
		if err != nil || hex.EncodeToString(got) != want {
			t.Errorf("%q: %x, %v; want %s", body, got, err, want)
		}
	}
}
