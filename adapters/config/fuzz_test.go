package config_test

import (
	"testing"

	"github.com/sigil-signer/sigil/adapters/config"
)

// FuzzParse: the loader never panics, never returns both a configuration
// and an error, and its errors stay short whatever the input (inputs are
// echoed shortened).
func FuzzParse(f *testing.F) {
	f.Add([]byte(signatoryExample))
	f.Add([]byte("server:\n  address: ${SIGIL_FUZZ_UNSET:-:1}\n  authorized_keys: [\"${X}\"]\n"))
	f.Add([]byte("a: &x {b: *x}\n---\nc: 1\n"))
	f.Add([]byte("vaults:\n  v:\n    driver: d\n    config: {k: $$, l: ${A:-${B:-c}}}\n"))
	f.Add([]byte("tezos:\n  tz1burnburnburnburnburnburnburjAYjjX:\n    authorized_keys: ~\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "")
		if err != nil {
			if c != nil {
				t.Fatal("both a configuration and an error")
			}
			if n := len(err.Error()); n > 4096 {
				t.Fatalf("error of %d bytes", n)
			}
			return
		}
		if c.BaseDir == "" || c.Server.Address == "" {
			t.Fatal("defaults not applied")
		}
		for _, v := range c.Vaults {
			if d := v.Decoder(); d != nil {
				var anyV map[string]any
				_ = d(&anyV)
			}
		}
	})
}
