package softvault

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func decoder(t *testing.T, src string) func(any) error {
	var node yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(src), &node))
	return config.StrictDecoder(node.Content[0])
}

type vector struct {
	Type, Passphrase, Encrypted string
	SecretKey                   string `json:"secret_key"`
	PublicKeyHash               string `json:"public_key_hash"`
}

// encryptedVectors are the octez-style encrypted keys checked by Taquito
// (domain/tezos/testdata).
func encryptedVectors(t *testing.T) []vector {
	b, err := os.ReadFile("../../domain/tezos/testdata/encrypted_keys.json")
	require.NoError(t, err)
	var v []vector
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func addresses(t *testing.T, inst vault.Instance) []string {
	ks, err := inst.Store.List(context.Background())
	require.NoError(t, err)
	var out []string
	for _, k := range ks {
		out = append(out, k.PKH)
	}
	return out
}

// TestFileVaultSignatoryFormat: Signatory's key file and section load
// verbatim; encrypted keys open with the configured passphrase; the warning
// that keys are in the clear is logged; secrets appear nowhere in logs.
func TestFileVaultSignatoryFormat(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	vecs := encryptedVectors(t)
	var plain []tezos.PrivateKey
	var entries []fileEntry
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		plain = append(plain, sk)
		entries = append(entries, fileEntry{Name: kt.String(), Value: "unencrypted:" + sk.Base58()})
	}
	var want []string
	for _, sk := range plain {
		pk, _ := sk.Public()
		want = append(want, pk.Hash().String())
	}
	// Encrypted entries sharing one passphrase.
	pass := vecs[0].Passphrase
	for _, v := range vecs {
		if v.Passphrase == pass {
			entries = append(entries, fileEntry{Name: "enc-" + v.Type, Value: "encrypted:" + v.Encrypted})
			want = append(want, v.PublicKeyHash)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.json")
	b, _ := json.Marshal(entries)
	require.NoError(t, os.WriteFile(path, b, 0o600))

	var logs bytes.Buffer
	env := vault.Env{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	inst, err := OpenFile(context.Background(), "local", decoder(t, "file: "+path+"\npassphrase: "+pass), env)
	require.NoError(t, err)
	defer inst.Close()
	require.Equal(t, "File", inst.Display, "Signatory's file vault's name")
	require.Equal(t, want, addresses(t, inst))
	require.Contains(t, logs.String(), "INSECURE")
	for _, e := range entries {
		require.NotContains(t, logs.String(), e.Value[strings.IndexByte(e.Value, ':')+1:])
	}
	require.NotContains(t, logs.String(), pass)

	// Passphrase from the environment, path as a bare scalar.
	t.Setenv(PassphraseEnv, pass)
	inst2, err := OpenFile(context.Background(), "local", decoder(t, path), vault.Env{})
	require.NoError(t, err)
	require.Equal(t, want, addresses(t, inst2))
	require.NoError(t, inst2.Close())

	// Errors name the entry, never the key or passphrase.
	t.Setenv(PassphraseEnv, "")
	_, err = OpenFile(context.Background(), "local", decoder(t, "file: "+path), vault.Env{})
	require.ErrorContains(t, err, `entry 5 ("enc-ed25519") is encrypted: give the passphrase`)
	_, err = OpenFile(context.Background(), "local", decoder(t, "file: "+path+"\npassphrase: wrong"), vault.Env{})
	require.ErrorContains(t, err, "wrong passphrase")
	require.NotContains(t, err.Error(), vecs[0].Encrypted)
	require.Equal(t, domain.KindInvalid, domain.KindOf(err))

	for name, c := range map[string]struct{ content, want string }{
		"not json":   {`[{"name": "a", "value": "unencrypted:edsk`, "is corrupt"},
		"bad key":    {`[{"name": "a", "value": "unencrypted:edskNOPE"}]`, `entry 1 ("a")`},
		"empty key":  {`[{"name": "a", "value": "unencrypted:"}]`, "empty secret key"},
		"wrong type": {`{"name": "a"}`, "is corrupt"},
		// Strict as the key store: null, an empty document, a field given
		// twice (the last would win), a case variant, an unknown field.
		"null":             {`null`, "the document is null"},
		"empty document":   {``, "empty document"},
		"duplicate value":  {`[{"name": "a", "value": "unencrypted:edskNOPE", "value": "unencrypted:edskNOPE"}]`, `"value" appears twice`},
		"case variant":     {`[{"name": "a", "value": "unencrypted:edskNOPE", "Value": "unencrypted:edskNOPE"}]`, "both appear"},
		"unknown field":    {`[{"name": "a", "secret": "unencrypted:edskNOPE"}]`, `unknown field "secret"`},
		"trailing data":    {`[] []`, "trailing data"},
		"entry not object": {`["unencrypted:edskNOPE"]`, "is corrupt"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".json")
			require.NoError(t, os.WriteFile(p, []byte(c.content), 0o600))
			_, err := OpenFile(context.Background(), "v", decoder(t, "file: "+p), vault.Env{})
			require.ErrorContains(t, err, c.want)
			require.NotContains(t, err.Error(), "edskNOPE")
		})
	}
	_, err = OpenFile(context.Background(), "v", decoder(t, "file: "+filepath.Join(dir, "absent.json")), vault.Env{})
	require.ErrorContains(t, err, "reading the key file")

	// A key listed twice (under two names, or once plain and once
	// encrypted) is refused naming both entries.
	dup := filepath.Join(dir, "dup.json")
	b, _ = json.Marshal([]fileEntry{entries[0], entries[1], {Name: "again", Value: entries[0].Value}})
	require.NoError(t, os.WriteFile(dup, b, 0o600))
	_, err = OpenFile(context.Background(), "v", decoder(t, "file: "+dup), vault.Env{})
	require.ErrorContains(t, err, `entry 3 ("again") holds the key `+want[0]+`, which entry 1 ("`+entries[0].Name+`") holds too`)

	// An empty list is an explicit empty key file: it loads, with a
	// warning (readiness reports it when policies name keys).
	empty := filepath.Join(dir, "empty.json")
	require.NoError(t, os.WriteFile(empty, []byte("[]\n"), 0o600))
	logs.Reset()
	inst3, err := OpenFile(context.Background(), "v", decoder(t, "file: "+empty), env)
	require.NoError(t, err)
	require.Empty(t, addresses(t, inst3))
	require.Contains(t, logs.String(), "holds no key")
	require.NoError(t, inst3.Close())
	_, err = OpenFile(context.Background(), "v", nil, vault.Env{})
	require.ErrorContains(t, err, "missing config")
	_, err = OpenFile(context.Background(), "v", decoder(t, "fil: x"), vault.Env{})
	require.ErrorContains(t, err, "invalid config")
}

// TestMemVault: Signatory's `mem` section (a list of secret keys) loads;
// the vault signs, imports into memory, and refuses to generate.
func TestMemVault(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	pk, _ := sk.Public()
	inst, err := OpenMem(context.Background(), "m", decoder(t, "- "+sk.Base58()), vault.Env{})
	require.NoError(t, err)
	defer inst.Close()
	require.Equal(t, "Mem", inst.Display, "Signatory's mem vault's name")
	require.Equal(t, []string{pk.Hash().String()}, addresses(t, inst))
	ctx := context.Background()
	got, err := inst.Enclave.Load(ctx, []byte(pk.Hash().String()))
	require.NoError(t, err)
	require.True(t, got.Equal(pk))
	sig, err := inst.Enclave.Sign(ctx, pk.Hash(), []byte("m"), 2)
	require.NoError(t, err)
	require.NoError(t, pk.Verify([]byte("m"), sig, 2))

	_, err = inst.Enclave.Generate(ctx, tezos.Ed25519)
	require.ErrorContains(t, err, "the mem vault cannot generate keys")
	require.Equal(t, domain.KindInvalid, domain.KindOf(err))

	sk2, _ := tezos.GeneratePrivateKey(tezos.BLS, nil)
	sealed, err := inst.Enclave.Import(ctx, sk2)
	require.NoError(t, err)
	require.NoError(t, inst.Store.Put(ctx, struct {
		PKH  string
		Blob []byte
	}{sealed.PublicKey.Hash().String(), sealed.Blob}))
	require.Len(t, addresses(t, inst), 2)
	require.NotContains(t, string(sealed.Blob), sk2.Base58())

	_, err = OpenMem(ctx, "m", decoder(t, "key: value"), vault.Env{})
	require.ErrorContains(t, err, "list of secret keys")
	_, err = OpenMem(ctx, "m", decoder(t, "- edesk1dNZsbAwzwQuB1ZaCmZjht5GRzHdz5zbdyFywHH7MLU2Cm6Zd3omav47UrSkV4PMXyrpbEaPaR58FBveUGx"), vault.Env{})
	require.ErrorContains(t, err, "key 1 is encrypted")
	// The same key twice (once with octez-client's prefix) is refused,
	// naming both.
	_, err = OpenMem(ctx, "m", decoder(t, "- "+sk.Base58()+"\n- "+sk2.Base58()+"\n- unencrypted:"+sk.Base58()), vault.Env{})
	require.ErrorContains(t, err, "key 3 holds the key "+pk.Hash().String()+", which key 1 holds too")
}
