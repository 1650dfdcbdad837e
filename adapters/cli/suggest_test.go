package cli

import (
	"strings"
	"testing"
)

// TestUnknownCommandsAndFlagsSuggest: a misspelt command, at any level,
// is an error (exit status 1, nothing run) naming the commands it is close
// to; a misspelt flag the flags. What was typed is repeated only when it
// does not look like a secret key.
func TestUnknownCommandsAndFlagsSuggest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"servee"}, `unknown command "servee" for "sigil" (did you mean serve? see ` + "`sigil --help`)"},
		{[]string{"sevre"}, "did you mean serve?"},
		{[]string{"serv"}, "did you mean serve?"},
		{[]string{"lsit"}, "did you mean list?"},
		{[]string{"list-op"}, "did you mean list-ops?"},
		{[]string{"list_requests"}, "did you mean list-requests?"},
		{[]string{"improt"}, "did you mean import?"},
		{[]string{"genrate"}, "did you mean generate?"},
		{[]string{"watermark"}, "did you mean watermarks?"},
		{[]string{"verison"}, "did you mean version?"},
		{[]string{"hlep"}, "did you mean help?"},
		{[]string{"watermarks", "exprot"}, `unknown command "exprot" for "sigil watermarks" (did you mean export?`},
		{[]string{"watermarks", "imprt", "x.json"}, "did you mean import?"},
		{[]string{"nonsense"}, `unknown command "nonsense" for "sigil" (see ` + "`sigil --help`)"},
		{[]string{"edsk3QoqBuvdamxouPhin7swCvkQNgq4jP5KZPbwWNnwdZpSpJiEbq"}, "unknown command (a value that looks like a secret key, not repeated)"},
		{[]string{"--cofnig", "x.yaml", "list"}, "unknown flag: --cofnig (did you mean --config?)"},
		{[]string{"list", "--base-dri", "x"}, "did you mean --base-dir?"},
		{[]string{"serve", "--no-lst"}, "did you mean --no-list?"},
		{[]string{"--jsonlog"}, "did you mean --json-log?"},
		{[]string{"generate", "--numbr", "2"}, "unknown flag: --numbr"},
	} {
		_, stderr, err := runCLI(t, "", tc.args...)
		if err == nil {
			t.Errorf("sigil %s: accepted", strings.Join(tc.args, " "))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("sigil %s: %v\nwant %q in it", strings.Join(tc.args, " "), err, tc.want)
		}
		if strings.Contains(err.Error()+stderr, "edsk3Qoq") {
			t.Errorf("sigil %s: the secret key is repeated", strings.Join(tc.args, " "))
		}
	}
}
