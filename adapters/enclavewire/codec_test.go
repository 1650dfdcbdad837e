package enclavewire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// h builds expected bytes from hex pieces; t(s) is the CBOR text string s
// (header byte for lengths < 24, then the ASCII bytes), so every vector below
// is derived by hand from RFC 8949 and can be read against its diagnostic
// notation.
func h(parts ...string) []byte {
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		panic(err)
	}
	return b
}

func txt(s string) string {
	if len(s) >= 24 {
		panic("test helper handles short strings only")
	}
	return hex.EncodeToString([]byte{0x60 | byte(len(s))}) + hex.EncodeToString([]byte(s))
}

func ptr[T any](v T) *T { return &v }

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestRequestGoldenVectors(t *testing.T) {
	key32 := seq(32)
	tests := []struct {
		name string
		req  *Request
		want []byte
	}{
		{
			// {"Initialize": {"wip_provider_path": "wip", "encryption_key_path": "key"}}
			name: "Initialize",
			req:  NewInitialize(Credentials{WIPProviderPath: "wip", EncryptionKeyPath: "key"}),
			want: h("a1", txt("Initialize"), "a2", txt("wip_provider_path"), "63776970", txt("encryption_key_path"), "636b6579"),
		},
		{
			// Nitro, as the enclave signer's Nitro client encodes it:
			// {"Initialize": {"access_key_id": "AK", "secret_access_key": "SK",
			//  "session_token": "ST", "encryption_key_id": "kid", "region": "eu-west-1"}}
			name: "Initialize (Nitro)",
			req:  NewInitializeAWS(AWSCredentials{AccessKeyID: "AK", SecretAccessKey: "SK", SessionToken: ptr("ST"), EncryptionKeyID: "kid", Region: "eu-west-1"}),
			want: h("a1", txt("Initialize"), "a5", txt("access_key_id"), txt("AK"), txt("secret_access_key"), txt("SK"),
				txt("session_token"), txt("ST"), txt("encryption_key_id"), txt("kid"), txt("region"), txt("eu-west-1")),
		},
		{
			// Nitro without a session token: the entry is absent, not null.
			name: "Initialize (Nitro, no session token)",
			req:  NewInitializeAWS(AWSCredentials{AccessKeyID: "AK", SecretAccessKey: "SK", EncryptionKeyID: "arn:aws:kms:k", Region: "us-east-1"}),
			want: h("a1", txt("Initialize"), "a4", txt("access_key_id"), txt("AK"), txt("secret_access_key"), txt("SK"),
				txt("encryption_key_id"), txt("arn:aws:kms:k"), txt("region"), txt("us-east-1")),
		},
		{
			// {"Import": h'010203'}
			name: "Import",
			req:  NewImport([]byte{1, 2, 3}),
			want: h("a1", "66496d706f7274", "43010203"),
		},
		{
			// {"ImportUnencrypted": {"Ed25519": h'000102…1f'}}
			name: "ImportUnencrypted",
			req:  NewImportUnencrypted(&PrivateKey{Ed25519: key32}),
			want: h("a1", "71", hex.EncodeToString([]byte("ImportUnencrypted")), "a1", "67", "45643235353139", "5820", hex.EncodeToString(key32)),
		},
		{
			// {"ImportUnencrypted": {"Bls": h'000102…1f'}}
			name: "ImportUnencryptedBls",
			req:  NewImportUnencrypted(&PrivateKey{Bls: key32}),
			want: h("a1", "71", hex.EncodeToString([]byte("ImportUnencrypted")), "a1", "63426c73", "5820", hex.EncodeToString(key32)),
		},
		{
			// {"Generate": "Bls"}
			name: "Generate",
			req:  NewGenerate(KeyBLS),
			want: h("a1", "6847656e6572617465", "63426c73"),
		},
		{
			// {"GenerateAndImport": "NistP256"}
			name: "GenerateAndImport",
			req:  NewGenerateAndImport(KeyNistP256),
			want: h("a1", "71", hex.EncodeToString([]byte("GenerateAndImport")), "684e69737450323536"),
		},
		{
			// {"GenerateAndImport": "Secp256k1"}
			name: "GenerateAndImportSecp",
			req:  NewGenerateAndImport(KeySecp256k1),
			want: h("a1", "71", hex.EncodeToString([]byte("GenerateAndImport")), "69536563703235366b31"),
		},
		{
			// {"Sign": {"handle": 3, "message": h'0102', "version": 2}}
			name: "Sign",
			req:  NewSign(3, []byte{1, 2}, 2),
			want: h("a1", "645369676e", "a3", "6668616e646c65", "03", "676d657373616765", "420102", "6776657273696f6e", "02"),
		},
		{
			// {"Sign": {"handle": 500, "message": h'', "version": 255}}
			name: "SignWideInts",
			req:  NewSign(500, nil, 255),
			want: h("a1", "645369676e", "a3", "6668616e646c65", "1901f4", "676d657373616765", "40", "6776657273696f6e", "18ff"),
		},
		{
			// {"SignWith": {"encrypted_private_key": h'aabb', "message": h'', "version": 0}}
			name: "SignWith",
			req:  NewSignWith([]byte{0xaa, 0xbb}, []byte{}, 0),
			want: h("a1", "685369676e57697468", "a3", "75", hex.EncodeToString([]byte("encrypted_private_key")), "42aabb", "676d657373616765", "40", "6776657273696f6e", "00"),
		},
		{
			// {"PublicKey": 0}
			name: "PublicKey",
			req:  NewPublicKey(0),
			want: h("a1", "695075626c69634b6579", "00"),
		},
		{
			// {"PublicKeyFrom": h'ff'}
			name: "PublicKeyFrom",
			req:  NewPublicKeyFrom([]byte{0xff}),
			want: h("a1", "6d5075626c69634b657946726f6d", "41ff"),
		},
		{
			// {"ProvePossession": 70000}
			name: "ProvePossession",
			req:  NewProvePossession(70000),
			want: h("a1", "6f50726f7665506f7373657373696f6e", "1a00011170"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodeRequest(tc.req)
			require.NoError(t, err)
			require.Equal(t, hex.EncodeToString(tc.want), hex.EncodeToString(got))

			// Signatory's Go client encodes with plain cbor.Marshal: same bytes.
			var plain []byte
			if tc.req.InitializeAWS != nil { // its generic Request with the AWS payload type
				plain, err = cbor.Marshal(struct {
					Initialize *AWSCredentials `cbor:"Initialize,omitempty"`
					Import     []byte          `cbor:"Import,omitempty"`
				}{Initialize: tc.req.InitializeAWS})
			} else {
				plain, err = cbor.Marshal(tc.req)
			}
			require.NoError(t, err)
			if tc.name != "SignWideInts" { // a nil message is null for plain Marshal
				require.Equal(t, hex.EncodeToString(got), hex.EncodeToString(plain))
			}

			// And our server decodes it back to the same request.
			back, err := DecodeRequest(got)
			require.NoError(t, err)
			require.Equal(t, tc.req.Method(), back.Method())
			again, err := EncodeRequest(back)
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestEncodeRequestRejects(t *testing.T) {
	_, err := EncodeRequest(&Request{})
	require.ErrorContains(t, err, "exactly one call")
	two := NewPublicKey(1)
	two.ProvePossession = two.PublicKey
	_, err = EncodeRequest(two)
	require.ErrorContains(t, err, "exactly one call")
	_, err = EncodeRequest(NewImport([]byte{}))
	require.ErrorContains(t, err, "empty sealed key blob")
}

func TestDecodeRequestStrict(t *testing.T) {
	bad := map[string][]byte{
		"not a map":         h("83010203"),
		"empty map":         h("a0"),
		"two calls":         h("a2", "695075626c69634b6579", "00", "6f50726f7665506f7373657373696f6e", "01"),
		"unknown call":      h("a1", txt("Explode"), "00"),
		"null value":        h("a1", "695075626c69634b6579", "f6"),
		"wrong value type":  h("a1", "695075626c69634b6579", "6161"),
		"bad key type":      h("a1", "6847656e6572617465", txt("Rsa")),
		"sign bad version":  h("a1", "645369676e", "a3", "6668616e646c65", "03", "676d657373616765", "420102", "6776657273696f6e", "03"),
		"sign no message":   h("a1", "645369676e", "a1", "6668616e646c65", "03"),
		"sign extra field":  h("a1", "645369676e", "a3", "6668616e646c65", "03", "676d657373616765", "420102", txt("extra"), "00"),
		"dup key":           h("a2", "695075626c69634b6579", "00", "695075626c69634b6579", "01"),
		"two private keys":  h("a1", "71", hex.EncodeToString([]byte("ImportUnencrypted")), "a2", "63426c73", "4101", "67", "45643235353139", "4101"),
		"init missing path": h("a1", txt("Initialize"), "a1", txt("wip_provider_path"), "63776970"),
		"nitro no region":   h("a1", txt("Initialize"), "a3", txt("access_key_id"), txt("AK"), txt("secret_access_key"), txt("SK"), txt("encryption_key_id"), txt("k")),
		"nitro bad token":   h("a1", txt("Initialize"), "a5", txt("access_key_id"), txt("AK"), txt("secret_access_key"), txt("SK"), txt("session_token"), "01", txt("encryption_key_id"), txt("k"), txt("region"), txt("r")),
		"nitro extra field": h("a1", txt("Initialize"), "a5", txt("access_key_id"), txt("AK"), txt("secret_access_key"), txt("SK"), txt("extra"), txt("x"), txt("encryption_key_id"), txt("k"), txt("region"), txt("r")),
		"truncated":         h("a1", "695075626c69634b"),
		"trailing bytes":    h("a1", "695075626c69634b6579", "00", "00"),
		"indefinite map":    h("bf", "695075626c69634b6579", "00", "ff"),
		"tagged":            h("c1", "a1", "695075626c69634b6579", "00"),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeRequest(b)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}

	// SignWith without version (Signatory's shape) is accepted, version nil.
	r, err := DecodeRequest(h("a1", "685369676e57697468", "a2", "75", hex.EncodeToString([]byte("encrypted_private_key")), "42aabb", "676d657373616765", "40"))
	require.NoError(t, err)
	require.NotNil(t, r.SignWith)
	require.Nil(t, r.SignWith.Version)
	require.Equal(t, []byte{0xaa, 0xbb}, r.SignWith.EncryptedPrivateKey)
}

func TestDecodeReplyGoldenVectors(t *testing.T) {
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, bytes.NewReader(seq(32)))
	require.NoError(t, err)
	pk, err := sk.Public()
	require.NoError(t, err)
	blsSK, err := tezos.GeneratePrivateKey(tezos.BLS, bytes.NewReader(seq(32)))
	require.NoError(t, err)
	blsPK, err := blsSK.Public()
	require.NoError(t, err)

	t.Run("OkNull", func(t *testing.T) {
		// {"Ok": null}
		require.NoError(t, DecodeReply(h("a1", "624f6b", "f6"), nil))
		// {"Ok": 0} is not null.
		require.ErrorIs(t, DecodeReply(h("a1", "624f6b", "00"), nil), ErrMalformed)
	})

	t.Run("Import", func(t *testing.T) {
		// {"Ok": {"public_key": {"Ed25519": h'…32…'}, "handle": 7}}
		b := h("a1", "624f6b", "a2", txt("public_key"), "a1", "67", "45643235353139", "5820", hex.EncodeToString(pk.Bytes), txt("handle"), "07")
		var r ImportResult
		require.NoError(t, DecodeReply(b, &r))
		require.Equal(t, uint64(7), r.Handle)
		got, err := r.PublicKey.PublicKeyOf(tezos.Ed25519)
		require.NoError(t, err)
		require.True(t, got.Equal(pk))
		_, err = r.PublicKey.PublicKeyOf(tezos.BLS)
		require.ErrorContains(t, err, "bls expected")
	})

	t.Run("GenerateAndImport", func(t *testing.T) {
		// {"Ok": {"encrypted_private_key": h'010203', "public_key": {"Bls": h'…48…'}, "handle": 1}}
		b := h("a1", "624f6b", "a3", "75", hex.EncodeToString([]byte("encrypted_private_key")), "43010203",
			txt("public_key"), "a1", "63426c73", "5830", hex.EncodeToString(blsPK.Bytes), txt("handle"), "01")
		var r GenerateAndImportResult
		require.NoError(t, DecodeReply(b, &r))
		require.Equal(t, []byte{1, 2, 3}, r.EncryptedPrivateKey)
		require.Equal(t, uint64(1), r.Handle)
		got, err := r.PublicKey.PublicKeyOf(tezos.BLS)
		require.NoError(t, err)
		require.True(t, got.Equal(blsPK))

		// Generate's result has no handle: decoding it as GenerateResult works,
		// as GenerateAndImportResult it does not.
		g := h("a1", "624f6b", "a2", "75", hex.EncodeToString([]byte("encrypted_private_key")), "43010203",
			txt("public_key"), "a1", "63426c73", "5830", hex.EncodeToString(blsPK.Bytes))
		var gr GenerateResult
		require.NoError(t, DecodeReply(g, &gr))
		require.ErrorIs(t, DecodeReply(g, &r), ErrMalformed)
	})

	t.Run("SignEd25519AsArray", func(t *testing.T) {
		// serde serializes ed25519::Signature as a 64-tuple of u8, which
		// ciborium writes as an array: {"Ok": {"Ed25519": [71, 135, …]}}
		sig, err := sk.Sign([]byte("hello"), 0)
		require.NoError(t, err)
		var arr strings.Builder
		arr.WriteString("9840") // array(64)
		for _, c := range sig.Bytes {
			if c < 24 {
				arr.WriteString(hex.EncodeToString([]byte{c}))
			} else {
				arr.WriteString("18" + hex.EncodeToString([]byte{c}))
			}
		}
		b := h("a1", "624f6b", "a1", "67", "45643235353139", arr.String())
		var r Tagged
		require.NoError(t, DecodeReply(b, &r))
		got, err := r.Signature(tezos.Ed25519)
		require.NoError(t, err)
		require.NoError(t, pk.Verify([]byte("hello"), got, 0))
		_, err = r.Signature(tezos.Secp256k1)
		require.ErrorContains(t, err, "secp256k1 expected")
	})

	t.Run("SignBls", func(t *testing.T) {
		// {"Ok": {"Bls": h'…96…'}}
		sig, err := blsSK.Sign([]byte("hello"), 2)
		require.NoError(t, err)
		b := h("a1", "624f6b", "a1", "63426c73", "5860", hex.EncodeToString(sig.Bytes))
		var r Tagged
		require.NoError(t, DecodeReply(b, &r))
		got, err := r.Signature(tezos.BLS)
		require.NoError(t, err)
		require.NoError(t, blsPK.Verify([]byte("hello"), got, 2))
	})

	t.Run("ErrNested", func(t *testing.T) {
		// {"Err": {"message": "signer error", "source": {"message": "invalid handle", "source": null}}}
		b := h("a1", "63457272", "a2", txt("message"), txt("signer error"), txt("source"),
			"a2", txt("message"), txt("invalid handle"), txt("source"), "f6")
		var r Tagged
		err := DecodeReply(b, &r)
		var re *RPCError
		require.ErrorAs(t, err, &re)
		require.NotErrorIs(t, err, ErrMalformed)
		require.Equal(t, "signer error: invalid handle", err.Error())
		require.Equal(t, "invalid handle", re.Source.Message)
		require.Nil(t, re.Source.Source)
		// Same bytes as our own server produces.
		enc, err := EncodeErr(NewError("signer error", "invalid handle"))
		require.NoError(t, err)
		require.Equal(t, hex.EncodeToString(b), hex.EncodeToString(enc))
	})

	t.Run("ErrUninitialized", func(t *testing.T) {
		// {"Err": {"message": "uninitialized", "source": null}}
		b := h("a1", "63457272", "a2", txt("message"), txt("uninitialized"), txt("source"), "f6")
		err := DecodeReply(b, nil)
		require.EqualError(t, err, "uninitialized")
		// source may also be absent (Signatory's omitempty shape)
		err = DecodeReply(h("a1", "63457272", "a1", txt("message"), txt("uninitialized")), nil)
		require.EqualError(t, err, "uninitialized")
	})
}

func TestDecodeReplyRejectsGarbage(t *testing.T) {
	bad := map[string][]byte{
		"empty":            {},
		"not a map":        h("01"),
		"both":             h("a2", "624f6b", "f6", "63457272", "a1", txt("message"), txt("x")),
		"unknown":          h("a1", txt("Maybe"), "f6"),
		"ok null for key":  h("a1", "624f6b", "f6"),
		"unknown key type": h("a1", "624f6b", "a1", txt("Rsa"), "4101"),
		"two key entries":  h("a1", "624f6b", "a2", "63426c73", "4101", "67", "45643235353139", "4101"),
		"key not bytes":    h("a1", "624f6b", "a1", "63426c73", "01"),
		"array over 255":   h("a1", "624f6b", "a1", "63426c73", "82", "1901", "00", "01"),
		"negative in arr":  h("a1", "624f6b", "a1", "63426c73", "81", "20"),
		"err no message":   h("a1", "63457272", "a1", txt("source"), "f6"),
		"err bad source":   h("a1", "63457272", "a2", txt("message"), txt("x"), txt("source"), "01"),
		"err nested bad":   h("a1", "63457272", "a2", txt("message"), txt("x"), txt("source"), "a1", txt("source"), "f6"),
		"err extra field":  h("a1", "63457272", "a2", txt("message"), txt("x"), txt("code"), "01"),
		"err msg not text": h("a1", "63457272", "a1", txt("message"), "4101"),
		"deep nesting":     bytes.Repeat([]byte{0x81}, 100),
		"huge array claim": h("a1", "624f6b", "a1", "63426c73", "9bffffffffffffffff"),
		"huge bytes claim": h("a1", "624f6b", "a1", "63426c73", "5bffffffffffffffff"),
		"invalid utf8":     h("a1", "624f6b", "a1", "62ffff", "4101"),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			var r Tagged
			err := DecodeReply(b, &r)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
	// Missing handle in an import result.
	var ir ImportResult
	err := DecodeReply(h("a1", "624f6b", "a1", txt("public_key"), "a1", "63426c73", "4101"), &ir)
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorContains(t, err, "handle")
}

func TestTaggedConversions(t *testing.T) {
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		pk, err := sk.Public()
		require.NoError(t, err)

		w, err := NewPrivateKey(sk)
		require.NoError(t, err)
		enc, err := MarshalPrivateKey(w)
		require.NoError(t, err)
		tg, err := UnmarshalPrivateKey(enc)
		require.NoError(t, err)
		back, err := tg.PrivateKey()
		require.NoError(t, err)
		require.Equal(t, sk.Bytes, back.Bytes)
		require.Equal(t, kt, back.Type)
		require.NotContains(t, w.GoString(), hex.EncodeToString(sk.Bytes))
		w.Zero()
		require.Equal(t, make([]byte, 32), append(append(append(append([]byte{}, w.Ed25519...), w.Secp256k1...), w.NistP256...), w.Bls...))

		ptg, err := TaggedFromPublicKey(pk)
		require.NoError(t, err)
		enc, err = ptg.MarshalCBOR()
		require.NoError(t, err)
		var dec Tagged
		require.NoError(t, dec.UnmarshalCBOR(enc))
		gotPK, err := dec.PublicKeyOf(kt)
		require.NoError(t, err)
		require.True(t, gotPK.Equal(pk))

		rkt, err := KeyTypeFor(kt)
		require.NoError(t, err)
		kt2, err := rkt.Tezos()
		require.NoError(t, err)
		require.Equal(t, kt, kt2)
	}
	_, err := Tagged{Type: KeyEd25519, Bytes: seq(31)}.PublicKey()
	require.ErrorContains(t, err, "31 bytes")
	_, err = Tagged{Type: KeyBLS, Bytes: seq(95)}.Signature(tezos.BLS)
	require.ErrorContains(t, err, "95 bytes")
	_, err = Tagged{Type: "Rsa", Bytes: seq(32)}.PublicKey()
	require.ErrorContains(t, err, "unknown key type")
	_, err = UnmarshalPrivateKey(h("a1", "63426c73", "01"))
	require.Error(t, err)
}

func TestRPCErrorChain(t *testing.T) {
	e := NewError("a", "b", "c")
	require.Equal(t, "a: b: c", e.Error())
	require.True(t, errors.Is(e, e.Source.Source))
}
