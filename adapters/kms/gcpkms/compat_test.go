package gcpkms_test

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// goldenVector is one entry of testdata/enclave-signer-plaintext.json: a
// private key, its public key, and the exact bytes enclave-signer hands to
// Cloud KMS Encrypt for it.
//
// How the plaintext bytes were derived (by hand, from enclave-signer's
// source, not from Sigil's encoder): enclave-signer seals
// ciborium::into_writer(&PrivateKey), where PrivateKey is a serde enum
// (externally tagged) with variants Secp256k1, NistP256, Ed25519 and Bls,
// each a newtype around a signing key whose Serialize calls
// serialize_bytes: the ECDSA keys with the 32-byte big-endian scalar
// (to_bytes), Ed25519 with the 32-byte seed (ed25519-dalek), BLS with blst's
// SecretKey::serialize, the 32-byte big-endian scalar. ciborium writes a
// newtype variant as a one-entry map: 0xa1, the variant name as a text
// string (0x60+len), then the value, here a byte string of 32 (0x58 0x20).
// So Ed25519 is a1 67 "Ed25519" 58 20 <seed>, Secp256k1 a1 69 "Secp256k1"
// 58 20 <scalar>, NistP256 a1 68 "NistP256" 58 20 <scalar>, Bls a1 63 "Bls"
// 58 20 <scalar>.
//
// The keys are independent test vectors: RFC 8032's first Ed25519 key, and
// the scalar 1 for the others, whose public key is the generator of the
// curve (secp256k1, P-256, BLS12-381 G1), compressed. With scalar 1 a
// little-endian reading would give another public key, so endianness is
// checked too.
type goldenVector struct {
	KeyType   enclavewire.KeyType `json:"key_type"`
	Address   string              `json:"address_type"`
	Secret    string              `json:"secret"`
	PublicKey string              `json:"public_key"`
	Plaintext string              `json:"plaintext"`
}

func loadGolden(t *testing.T) []goldenVector {
	t.Helper()
	data, err := os.ReadFile("testdata/enclave-signer-plaintext.json")
	require.NoError(t, err)
	var vs []goldenVector
	require.NoError(t, json.Unmarshal(data, &vs))
	require.Len(t, vs, 4)
	return vs
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// TestGoldenPlaintextEncoding checks the encoder the enclave seals with
// against the vectors, without any server in between.
func TestGoldenPlaintextEncoding(t *testing.T) {
	for _, v := range loadGolden(t) {
		kt, err := v.KeyType.Tezos()
		require.NoError(t, err)
		sk, err := tezos.NewPrivateKey(kt, unhex(t, v.Secret))
		require.NoError(t, err)
		w, err := enclavewire.NewPrivateKey(sk)
		require.NoError(t, err)
		got, err := enclavewire.MarshalPrivateKey(w)
		require.NoError(t, err)
		require.Equal(t, v.Plaintext, hex.EncodeToString(got), "%s", v.KeyType)

		back, err := enclavewire.UnmarshalPrivateKey(unhex(t, v.Plaintext))
		require.NoError(t, err)
		require.Equal(t, v.KeyType, back.Type)
		require.Equal(t, v.Secret, hex.EncodeToString(back.Bytes))
		pk, err := sk.Public()
		require.NoError(t, err)
		require.Equal(t, v.PublicKey, hex.EncodeToString(pk.Bytes), "%s public key", v.KeyType)
		require.True(t, strings.HasPrefix(pk.Hash().String(), v.Address))
	}
}

// enclave runs the enclave server in process with the Cloud KMS port on
// the fakes, as sigil-enclave --kms gcp does.
func startEnclave(t *testing.T, f *fakes) (*enclaveserver.Server, string) {
	t.Helper()
	p, err := gcpkms.New(f.config())
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	srv := enclavetest.NewServer(t, enclavetest.ServerOptions{KMS: p})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(l) }()
	return srv, l.Addr().String()
}

var creds = enclavewire.Credentials{WIPProviderPath: wip, EncryptionKeyPath: keyRes}

func wirePrivateKey(t enclavewire.KeyType, b []byte) *enclavewire.PrivateKey {
	switch t {
	case enclavewire.KeyEd25519:
		return &enclavewire.PrivateKey{Ed25519: b}
	case enclavewire.KeySecp256k1:
		return &enclavewire.PrivateKey{Secp256k1: b}
	case enclavewire.KeyNistP256:
		return &enclavewire.PrivateKey{NistP256: b}
	}
	return &enclavewire.PrivateKey{Bls: b}
}

// TestEnclaveSealsEnclaveSignerPlaintext runs the vectors through the
// enclave: what it hands Cloud KMS for each imported key is byte for byte
// enclave-signer's plaintext, and a blob made by sealing enclave-signer's
// plaintext under the same key (what enclave-signer stores) imports and
// signs. Cloud KMS ciphertext is opaque, so equal plaintext under the same
// key is what makes the blobs interchangeable.
func TestEnclaveSealsEnclaveSignerPlaintext(t *testing.T) {
	f := newFakes(t, time.Hour)
	_, addr := startEnclave(t, f)
	var mu sync.Mutex
	var seen [][]byte
	f.kms.OnPlaintext(func(_ string, plain []byte) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, plain)
	})
	c := wiretest.Dial(t, addr)
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
	msg := []byte("\x03sigil golden vector operation")

	for i, v := range loadGolden(t) {
		// Sigil → enclave-signer.
		var gi enclavewire.GenerateAndImportResult
		require.NoError(t, c.Call(enclavewire.NewImportUnencrypted(wirePrivateKey(v.KeyType, unhex(t, v.Secret))), &gi))
		require.Equal(t, v.PublicKey, hex.EncodeToString(gi.PublicKey.Bytes), "%s", v.KeyType)
		mu.Lock()
		require.Len(t, seen, i+1)
		require.Equal(t, v.Plaintext, hex.EncodeToString(seen[i]), "%s: plaintext handed to Encrypt", v.KeyType)
		mu.Unlock()
		plain, err := f.kms.Unseal(keyRes, gi.EncryptedPrivateKey)
		require.NoError(t, err)
		require.Equal(t, v.Plaintext, hex.EncodeToString(plain))

		// enclave-signer → Sigil.
		blob, err := f.kms.Seal(keyRes, unhex(t, v.Plaintext))
		require.NoError(t, err)
		var ir enclavewire.ImportResult
		require.NoError(t, c.Call(enclavewire.NewImport(blob), &ir))
		require.Equal(t, v.PublicKey, hex.EncodeToString(ir.PublicKey.Bytes), "%s imported from enclave-signer's plaintext", v.KeyType)
		kt, err := v.KeyType.Tezos()
		require.NoError(t, err)
		pk, err := tezos.NewPublicKey(kt, unhex(t, v.PublicKey))
		require.NoError(t, err)
		var sig enclavewire.Tagged
		require.NoError(t, c.Call(enclavewire.NewSign(ir.Handle, msg, 2), &sig))
		s, err := sig.Signature(kt)
		require.NoError(t, err)
		require.NoError(t, pk.Verify(msg, s, 2), "%s", v.KeyType)
	}
}

func TestEnclaveInitializeAndRefusals(t *testing.T) {
	f := newFakes(t, time.Hour)
	srv, addr := startEnclave(t, f)
	c := wiretest.Dial(t, addr)

	// STS refusal: Initialize fails with a clear error, the session stays
	// uninitialized and can try again.
	f.sts.Refuse(403, "the attestation does not satisfy the provider's condition")
	err := c.Call(enclavewire.NewInitialize(creds), nil)
	require.ErrorContains(t, err, "encryption error: no access token for workload identity provider "+wip)
	require.ErrorContains(t, err, "the attestation does not satisfy the provider's condition")
	var gr enclavewire.GenerateResult
	require.EqualError(t, c.Call(enclavewire.NewGenerate(enclavewire.KeyEd25519), &gr), "uninitialized")
	f.sts.Refuse(0, "")
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))

	// Malformed names never reach a service.
	c2 := wiretest.Dial(t, addr)
	err = c2.Call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "pool", EncryptionKeyPath: keyRes}), nil)
	require.ErrorContains(t, err, "wip_provider_path \"pool\" is not projects/")

	// A key the KMS refuses: a clear error, and nothing loaded or sealed.
	refused := strings.Replace(keyRes, "/enclave", "/revoked", 1)
	c3 := wiretest.Dial(t, addr)
	require.NoError(t, c3.Call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: wip, EncryptionKeyPath: refused}), nil))
	var gi enclavewire.GenerateAndImportResult
	err = c3.Call(enclavewire.NewGenerateAndImport(enclavewire.KeyBLS), &gi)
	require.ErrorContains(t, err, "encryption error: Cloud KMS Encrypt with "+refused)
	require.ErrorContains(t, err, "PermissionDenied")
	err = c3.Call(enclavewire.NewImportUnencrypted(&enclavewire.PrivateKey{Ed25519: make([]byte, 32)}), &gi)
	require.ErrorContains(t, err, "Cloud KMS Encrypt with "+refused)
	var sig enclavewire.Tagged
	require.EqualError(t, c3.Call(enclavewire.NewSign(0, []byte("x"), 2), &sig), "signer error: invalid handle")
	for _, s := range srv.Sessions() {
		require.Empty(t, s.Keys, "a key stayed loaded after its seal failed")
	}

	// A corrupted checksum: refused, nothing loaded.
	f.kms.CorruptChecksums(true)
	err = c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeySecp256k1), &gi)
	require.ErrorContains(t, err, "CRC32C")
	f.kms.CorruptChecksums(false)
	require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeySecp256k1), &gi))
	require.Equal(t, uint64(0), gi.Handle, "the refused key took a handle")
}
