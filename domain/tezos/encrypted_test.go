package tezos_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestDecryptSecretKeyVectors decrypts keys encrypted the octez-client way
// by an independent implementation and confirmed by Taquito's
// InMemorySigner (testdata/encrypted_keys.json, made by
// tools/taquito/encrypted-key-vectors.js): the decrypted key is Taquito's
// unencrypted key, with Taquito's address.
func TestDecryptSecretKeyVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/encrypted_keys.json")
	if err != nil {
		t.Fatal(err)
	}
	var vecs []struct {
		Type, Passphrase, Encrypted string
		SecretKey                   string `json:"secret_key"`
		PublicKeyHash               string `json:"public_key_hash"`
	}
	if err := json.Unmarshal(b, &vecs); err != nil {
		t.Fatal(err)
	}
	if len(vecs) < 12 {
		t.Fatalf("only %d vectors", len(vecs))
	}
	types := map[string]bool{}
	for _, v := range vecs {
		t.Run(v.Type+"/"+v.Passphrase, func(t *testing.T) {
			if !tezos.IsEncryptedSecretKey(v.Encrypted) {
				t.Fatalf("%s… not recognized as encrypted", v.Encrypted[:5])
			}
			sk, err := tezos.DecryptSecretKey(v.Encrypted, []byte(v.Passphrase))
			if err != nil {
				t.Fatal(err)
			}
			pk, err := sk.Public()
			if err != nil {
				t.Fatal(err)
			}
			if got := pk.Hash().String(); got != v.PublicKeyHash {
				t.Fatalf("address %s, Taquito says %s", got, v.PublicKeyHash)
			}
			want, err := tezos.ParsePrivateKey(v.SecretKey)
			if err != nil {
				t.Fatal(err)
			}
			if sk.Type != want.Type || string(sk.Bytes) != string(want.Bytes) {
				t.Fatal("decrypted key differs from Taquito's")
			}
			types[sk.Type.String()] = true

			for _, wrong := range [][]byte{[]byte(v.Passphrase + "!"), nil, []byte(strings.ToUpper(v.Passphrase) + "X")} {
				_, err := tezos.DecryptSecretKey(v.Encrypted, wrong)
				if !errors.Is(err, tezos.ErrPassphrase) {
					t.Fatalf("wrong passphrase: got %v, want ErrPassphrase", err)
				}
				if err != nil && strings.Contains(err.Error(), v.Passphrase) {
					t.Fatal("error shows the passphrase")
				}
			}
		})
	}
	if len(types) != 4 {
		t.Fatalf("vectors cover %d key types, want 4", len(types))
	}
}

func TestDecryptSecretKeyRejects(t *testing.T) {
	// An unencrypted key is parsed as is.
	sk, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tezos.DecryptSecretKey(sk.Base58(), nil)
	if err != nil || string(got.Bytes) != string(sk.Bytes) {
		t.Fatalf("unencrypted key: %v", err)
	}
	for name, s := range map[string]string{
		"bad checksum": "edesk1dNZsbAwzwQuB1ZaCmZjht5GRzHdz5zbdyFywHH7MLU2Cm6Zd3omav47UrSkV4PMXyrpbEaPaR58FBveUGy",
		"truncated":    "edesk1dNZsbAwzwQuB1ZaCmZjht5GRzHdz5zbdyFywHH7MLU2Cm6Zd3omav47UrSkV4PMX",
		"not base58":   "edesk0OIl",
	} {
		if _, err := tezos.DecryptSecretKey(s, []byte("x")); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), s) {
			t.Errorf("%s: error shows the key", name)
		}
	}
}
