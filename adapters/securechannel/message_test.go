package securechannel_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
)

// TestAttestTokenRequestEncoding: the request is the canonical CBOR of
// {"AttestationToken": {}}, and a server of the plain protocol refuses it
// as malformed rather than mistaking it for another call.
func TestAttestTokenRequestEncoding(t *testing.T) {
	want, err := cbor.Marshal(map[string]map[string]int{"AttestationToken": {}})
	if err != nil {
		t.Fatal(err)
	}
	req := securechannel.AttestationTokenRequest()
	if !bytes.Equal(req, want) {
		t.Fatalf("request % x, want % x", req, want)
	}
	if !securechannel.IsAttestationTokenRequest(req) {
		t.Fatal("not recognized")
	}
	req[0] = 0 // a copy: the package's bytes are untouched
	if !securechannel.IsAttestationTokenRequest(securechannel.AttestationTokenRequest()) {
		t.Fatal("AttestationTokenRequest returned the package's own slice")
	}
	if _, err := enclavewire.DecodeRequest(securechannel.AttestationTokenRequest()); !errors.Is(err, enclavewire.ErrMalformed) {
		t.Fatalf("enclavewire.DecodeRequest = %v", err)
	}
	sign, _ := enclavewire.EncodeRequest(enclavewire.NewSign(1, []byte("m"), 2))
	for _, p := range [][]byte{sign, nil, {0xa1, 0x70}, append(securechannel.AttestationTokenRequest(), 0)} {
		if securechannel.IsAttestationTokenRequest(p) {
			t.Errorf("% x recognized", p)
		}
		if _, ok := securechannel.HandlePlainFrame(p); ok {
			t.Errorf("% x handled by the plain server", p)
		}
	}
	reply, ok := securechannel.HandlePlainFrame(securechannel.AttestationTokenRequest())
	var rerr *enclavewire.RPCError
	if _, err := securechannel.DecodeAttestationTokenReply(reply); !ok || !errors.As(err, &rerr) || rerr.Message != securechannel.ErrPlainChannel {
		t.Fatalf("plain server: %v, %v", ok, err)
	}
}

func TestAttestTokenReply(t *testing.T) {
	reply, err := securechannel.EncodeAttestationTokenReply("a.b.c")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := securechannel.DecodeAttestationTokenReply(reply); err != nil || tok != "a.b.c" {
		t.Fatalf("%q, %v", tok, err)
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
		if _, err := securechannel.DecodeAttestationTokenReply(b); !errors.Is(err, enclavewire.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzAttestTokenReply: any bytes decode to a token or an error, and a
// token that decodes re-encodes to a reply that decodes to it.
func FuzzAttestTokenReply(f *testing.F) {
	r, _ := securechannel.EncodeAttestationTokenReply("eyJ.eyJ.sig")
	f.Add(r)
	e, _ := enclavewire.EncodeErr(enclavewire.NewError("no token", "launcher down"))
	f.Add(e)
	f.Add(securechannel.AttestationTokenRequest())
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := securechannel.DecodeAttestationTokenReply(b)
		if err != nil {
			return
		}
		again, err := securechannel.EncodeAttestationTokenReply(tok)
		if err != nil {
			t.Fatal(err)
		}
		if tok2, err := securechannel.DecodeAttestationTokenReply(again); err != nil || tok2 != tok {
			t.Fatalf("round trip %q: %q, %v", tok, tok2, err)
		}
	})
}
