package enclavewire

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte{0xa1, 0x62, 'O', 'k', 0xf6})
	f.Add(h("a1", "63457272", "a2", txt("message"), txt("signer error"), txt("source"),
		"a2", txt("message"), txt("invalid handle"), txt("source"), "f6"))
	f.Add(h("a1", "624f6b", "a2", txt("public_key"), "a1", "63426c73", "4101", txt("handle"), "07"))
	f.Add(h("a1", "624f6b", "a1", "67", "45643235353139", "8301021819"))
	f.Fuzz(func(t *testing.T, data []byte) {
		targets := []func() any{
			func() any { return nil },
			func() any { return new(Tagged) },
			func() any { return new(ImportResult) },
			func() any { return new(GenerateResult) },
			func() any { return new(GenerateAndImportResult) },
		}
		for _, mk := range targets {
			err := DecodeReply(data, mk())
			if err != nil {
				var re *RPCError
				if !errors.Is(err, ErrMalformed) && !errors.As(err, &re) {
					t.Fatalf("error neither malformed nor RPC error: %v", err)
				}
			}
		}
		if r, err := DecodeRequest(data); err == nil {
			if _, err := EncodeRequest(r); err != nil && r.Import == nil && r.PublicKeyFrom == nil {
				t.Fatalf("decoded request does not re-encode: %v", err)
			}
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0xf6})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 64
		r := bytes.NewReader(data)
		for {
			p, err := ReadFrame(r, max)
			if err != nil {
				return
			}
			if len(p) == 0 || len(p) > max {
				t.Fatalf("frame of %d bytes accepted", len(p))
			}
		}
	})
}
