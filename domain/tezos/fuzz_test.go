package tezos_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// FuzzParse feeds arbitrary input to every parser: none may panic, and
// whatever parses must re-encode to the same text.
func FuzzParse(f *testing.F) {
	for _, k := range knownKeys {
		f.Add([]byte(k.sk))
		f.Add([]byte(k.pkh))
		if k.pk != "" {
			f.Add([]byte(k.pk))
		}
	}
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		if err != nil {
			f.Fatal(err)
		}
		sig, _ := sk.Sign([]byte{3, 1}, tezos.SignVersionLatest)
		f.Add([]byte(sig.String()))
		f.Add([]byte(sig.Generic()))
	}
	f.Add([]byte("unencrypted:edsk3gUfUPyBSfrS9CCgmCiQsTCHGkviBDusMxDJstFtojtc1zcpsh"))
	f.Add([]byte("111111111111"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	files, _ := filepath.Glob(filepath.Join("testdata", "*.pem"))
	der, _ := filepath.Glob(filepath.Join("testdata", "*.der"))
	for _, name := range append(files, der...) {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if sk, err := tezos.ParsePrivateKeyAny(data); err == nil {
			if _, err := sk.Public(); err != nil {
				t.Fatalf("parsed secret key has no public key: %v", err)
			}
			back, err := tezos.ParsePrivateKey(sk.Base58())
			if err != nil || back.Type != sk.Type || !bytes.Equal(back.Bytes, sk.Bytes) {
				t.Fatalf("secret key does not round-trip through base58: %v", err)
			}
		}
		s := string(data)
		if sk, err := tezos.ParsePrivateKey(s); err == nil && len(s) != 98 && sk.Base58() != s {
			t.Fatal("secret key re-encodes differently")
		}
		if pk, err := tezos.ParsePublicKey(s); err == nil {
			if pk.String() != s {
				t.Fatalf("public key %q re-encodes as %q", s, pk.String())
			}
			if !strings.HasPrefix(pk.Hash().String(), pk.Type.AddressPrefix()) {
				t.Fatalf("key hash %s of a %v key", pk.Hash(), pk.Type)
			}
		}
		if h, err := tezos.ParsePublicKeyHash(s); err == nil && h.String() != s {
			t.Fatalf("key hash %q re-encodes as %q", s, h.String())
		}
		if sig, err := tezos.ParseSignature(s); err == nil && sig.String() != s {
			t.Fatalf("signature %q re-encodes as %q", s, sig.String())
		}
	})
}
