package tezos_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestVerifierAgreesWithVerify: for every key type and signing version, a
// Verifier accepts exactly what PublicKey.Verify accepts: the signature
// over the message, not over another message, not by another key, not in
// the other BLS scheme, not of another type; and proofs of possession.
func TestVerifierAgreesWithVerify(t *testing.T) {
	msg := []byte("\x13verifier test message")
	other := []byte("\x13another message")
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		pk, err := sk.Public()
		require.NoError(t, err)
		sk2, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		v, err := tezos.NewVerifier(pk)
		require.NoError(t, err)
		require.True(t, v.PublicKey().Equal(pk))
		versions := []uint8{tezos.SignVersion2}
		if kt == tezos.BLS {
			versions = []uint8{tezos.SignVersion1, tezos.SignVersion2, tezos.SignVersionLatest}
		}
		for _, ver := range versions {
			sig, err := sk.Sign(msg, ver)
			require.NoError(t, err)
			bySk2, err := sk2.Sign(msg, ver)
			require.NoError(t, err)
			flipped := tezos.Signature{Type: sig.Type, Bytes: bytes.Clone(sig.Bytes)}
			flipped.Bytes[len(flipped.Bytes)/2] ^= 1
			cases := []struct {
				msg []byte
				sig tezos.Signature
				ver uint8
			}{{msg, sig, ver}, {other, sig, ver}, {msg, bySk2, ver}, {msg, flipped, ver},
				{msg, tezos.Signature{Type: sig.Type, Bytes: sig.Bytes[:len(sig.Bytes)-1]}, ver}}
			if kt == tezos.BLS {
				cases = append(cases, struct {
					msg []byte
					sig tezos.Signature
					ver uint8
				}{msg, sig, 3 - min(ver, 2)}, struct {
					msg []byte
					sig tezos.Signature
					ver uint8
				}{msg, sig, 0})
			}
			for i, c := range cases {
				want := pk.Verify(c.msg, c.sig, c.ver)
				got := v.Verify(c.msg, c.sig, c.ver)
				require.Equal(t, want == nil, got == nil, "%v version %d case %d: Verify %v, Verifier %v", kt, ver, i, want, got)
			}
			require.NoError(t, v.Verify(msg, sig, ver))
		}
		wrongType := tezos.KeyTypes[(int(kt)+1)%len(tezos.KeyTypes)]
		require.Error(t, v.Verify(msg, tezos.Signature{Type: wrongType, Bytes: make([]byte, 64)}, 2))
		if kt == tezos.BLS {
			proof, err := sk.ProvePossession()
			require.NoError(t, err)
			require.NoError(t, v.VerifyPossession(proof))
			proof2, err := sk2.ProvePossession()
			require.NoError(t, err)
			require.Error(t, v.VerifyPossession(proof2))
		} else {
			require.Error(t, v.VerifyPossession(tezos.Signature{Type: tezos.BLS, Bytes: make([]byte, 96)}))
		}
	}
	_, err := tezos.NewVerifier(tezos.PublicKey{Type: tezos.BLS, Bytes: make([]byte, 48)})
	require.Error(t, err, "an invalid BLS key is refused once, at construction")
}

// FuzzVerifierAgrees: whatever the signature bytes, the Verifier and
// PublicKey.Verify agree.
func FuzzVerifierAgrees(f *testing.F) {
	keys := map[tezos.KeyType]tezos.PrivateKey{}
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, bytes.NewReader(bytes.Repeat([]byte{byte(kt) + 1}, 256)))
		if err != nil {
			f.Fatal(err)
		}
		keys[kt] = sk
	}
	msg := []byte("\x13fuzz")
	for _, kt := range tezos.KeyTypes {
		sig, _ := keys[kt].Sign(msg, 2)
		f.Add(uint8(kt), sig.Bytes, uint8(2))
	}
	f.Fuzz(func(t *testing.T, kt uint8, sigb []byte, ver uint8) {
		sk, ok := keys[tezos.KeyType(kt)]
		if !ok {
			return
		}
		pk, _ := sk.Public()
		v, err := tezos.NewVerifier(pk)
		if err != nil {
			t.Fatal(err)
		}
		sig := tezos.Signature{Type: pk.Type, Bytes: sigb}
		if (pk.Verify(msg, sig, ver) == nil) != (v.Verify(msg, sig, ver) == nil) {
			t.Fatalf("%v: Verify and Verifier disagree on %x version %d", pk.Type, sigb, ver)
		}
	})
}
