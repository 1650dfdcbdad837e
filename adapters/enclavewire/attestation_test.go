package enclavewire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// TestAttestTokenRequestEncoding: the request is the canonical CBOR of
// {"AttestationToken": {}}, what EncodeRequest makes, the 19 bytes the
// design documents; DecodeRequest reads it back, and refuses any other
// value (null, a map with a field, another type) as malformed.
func TestAttestTokenRequestEncoding(t *testing.T) {
	want, err := cbor.Marshal(map[string]map[string]int{"AttestationToken": {}})
	if err != nil {
		t.Fatal(err)
	}
	req := AttestationTokenRequest()
	if !bytes.Equal(req, want) || len(req) != 19 {
		t.Fatalf("request % x, want % x", req, want)
	}
	enc, err := EncodeRequest(NewAttestationToken())
	if err != nil || !bytes.Equal(enc, want) {
		t.Fatalf("EncodeRequest: % x, %v", enc, err)
	}
	req[0] = 0 // a copy: the package's bytes are untouched
	if !bytes.Equal(AttestationTokenRequest(), want) {
		t.Fatal("AttestationTokenRequest returned the package's own slice")
	}
	r, err := DecodeRequest(want)
	if err != nil || r.AttestationToken == nil || r.Method() != MethodAttestationToken {
		t.Fatalf("DecodeRequest: %+v, %v", r, err)
	}
	for name, v := range map[string]any{
		"null":       map[string]any{"AttestationToken": nil},
		"field":      map[string]any{"AttestationToken": map[string]int{"nonce": 1}},
		"text":       map[string]any{"AttestationToken": "now"},
		"with other": map[string]any{"AttestationToken": map[string]int{}, "PublicKey": 0},
	} {
		b, _ := cbor.Marshal(v)
		if _, err := DecodeRequest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAttestTokenReply(t *testing.T) {
	reply, err := EncodeAttestationTokenReply("a.b.c")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := DecodeAttestationTokenReply(reply); err != nil || tok != "a.b.c" {
		t.Fatalf("%q, %v", tok, err)
	}
	e, _ := EncodeErr(NewError("AttestationToken", "no valid attestation token: launcher down"))
	var rerr *RPCError
	if _, err := DecodeAttestationTokenReply(e); !errors.As(err, &rerr) || rerr.Error() != "AttestationToken: no valid attestation token: launcher down" {
		t.Fatalf("error reply: %v", err)
	}
	for name, v := range map[string]any{
		"empty token":   map[string]any{"Ok": map[string]any{"token": ""}},
		"bytes token":   map[string]any{"Ok": map[string]any{"token": []byte("a.b.c")}},
		"extra field":   map[string]any{"Ok": map[string]any{"token": "a.b.c", "x": 1}},
		"null":          map[string]any{"Ok": nil},
		"bare string":   map[string]any{"Ok": "a.b.c"},
		"unknown entry": map[string]any{"Maybe": map[string]any{"token": "a.b.c"}},
		"long token":    map[string]any{"Ok": map[string]any{"token": strings.Repeat("a", 64<<10+1)}},
	} {
		b, _ := cbor.Marshal(v)
		if _, err := DecodeAttestationTokenReply(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzAttestTokenReply: any bytes decode to a token or an error, and a
// token that decodes re-encodes to a reply that decodes to it.
func FuzzAttestTokenReply(f *testing.F) {
	r, _ := EncodeAttestationTokenReply("eyJ.eyJ.sig")
	f.Add(r)
	e, _ := EncodeErr(NewError("no token", "launcher down"))
	f.Add(e)
	f.Add(AttestationTokenRequest())
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := DecodeAttestationTokenReply(b)
		if err != nil {
			return
		}
		again, err := EncodeAttestationTokenReply(tok)
		if err != nil {
			t.Fatal(err)
		}
		if tok2, err := DecodeAttestationTokenReply(again); err != nil || tok2 != tok {
			t.Fatalf("round trip %q: %q, %v", tok, tok2, err)
		}
	})
}
