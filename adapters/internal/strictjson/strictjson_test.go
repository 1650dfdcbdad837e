package strictjson

import (
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type mark struct {
	Level int32   `json:"level"`
	Round int32   `json:"round"`
	Hash  *string `json:"hash"`
}

type entry struct {
	PKH string `json:"public_key_hash"`
	Key string `json:"encrypted_private_key"`
}

func TestCheck(t *testing.T) {
	chain := map[string]map[string]*mark{}
	for _, tc := range []struct {
		name  string
		data  string
		shape any
		want  string // "" = valid
	}{
		{"valid chain", `{"tz1a":{"block":{"level":1,"round":0,"hash":"vh"}}}`, chain, ""},
		{"valid list", `[{"public_key_hash":"tz1","encrypted_private_key":"AA=="}]`, []entry{}, ""},
		{"empty list", `[]`, []entry{}, ""},
		{"null document", `null`, []entry{}, "the document is null"},
		{"blank document", "  \n", []entry{}, "empty document"},
		{"case duplicate", `{"tz1a":{"block":{"level":9000,"Level":1,"round":0}}}`, chain, `tz1a.block: keys "level" and "Level" both appear`},
		{"exact duplicate", `{"tz1a":{"block":{"level":1,"level":2}}}`, chain, `key "level" appears twice`},
		{"duplicate map key", `{"tz1a":{},"tz1a":{}}`, chain, `top level: key "tz1a" appears twice`},
		{"wrong case alone", `{"tz1a":{"block":{"Level":1}}}`, chain, `unknown field "Level"`},
		{"unknown field", `[{"public_key_hash":"tz1","encrypted_private_key":"AA==","extra":1}]`, []entry{}, `[0]: unknown field "extra" (known: encrypted_private_key, public_key_hash)`},
		{"trailing data", `[] []`, []entry{}, "trailing data"},
		{"truncated", `[{"public_key_hash":"tz1"`, []entry{}, "invalid JSON"},
		{"syntax error", "[\n{,}]", []entry{}, "invalid JSON at line 2"},
		{"any shape keeps duplicate check", `{"a":{"x":1,"X":2}}`, map[string]any{}, `keys "x" and "X"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.data), tc.shape)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDepthBounded(t *testing.T) {
	deep := ""
	for range 100 {
		deep += "["
	}
	for range 100 {
		deep += "]"
	}
	err := Check([]byte(deep), []any{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nested more than")
}

func TestSyntaxError(t *testing.T) {
	data := []byte("[\n  {\"a\": 1,,}\n]")
	var v any
	err := SyntaxError(data, json.Unmarshal(data, &v))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid JSON at line 2, column ")
	assert.Contains(t, err.Error(), "invalid character ',' looking for beginning of object key string")
	assert.EqualError(t, SyntaxError([]byte("[\n1,"), io.ErrUnexpectedEOF), "invalid JSON at line 2: unexpected end of data")
	assert.EqualError(t, SyntaxError(nil, errors.New("other")), "invalid JSON: other")
}
