package tezos

import (
	"bytes"
	"testing"

	"github.com/sigil-signer/sigil/integration/taquito"
)

// TestPrefixesMatchTaquito compares every base58check prefix and payload
// length we use with Taquito's table (@taquito/utils prefixV2 and
// payloadLength), and checks the leading characters they produce.
func TestPrefixesMatchTaquito(t *testing.T) {
	ours := []struct {
		name   string // Taquito's PrefixV2 key
		prefix []byte
		size   int
		lead   string // leading characters of every encoding
	}{
		{"Ed25519PublicKeyHash", prefixTz1, 20, "tz1"},
		{"Secp256k1PublicKeyHash", prefixTz2, 20, "tz2"},
		{"P256PublicKeyHash", prefixTz3, 20, "tz3"},
		{"BLS12_381PublicKeyHash", prefixTz4, 20, "tz4"},
		{"Ed25519PublicKey", prefixEdpk, 32, "edpk"},
		{"Secp256k1PublicKey", prefixSppk, 33, "sppk"},
		{"P256PublicKey", prefixP2pk, 33, "p2pk"},
		{"BLS12_381PublicKey", prefixBLpk, 48, "BLpk"},
		{"Ed25519Seed", prefixEdskSeed, 32, "edsk"},
		{"Ed25519SecretKey", prefixEdsk64, 64, "edsk"},
		{"Secp256k1SecretKey", prefixSpsk, 32, "spsk"},
		{"P256SecretKey", prefixP2sk, 32, "p2sk"},
		{"BLS12_381SecretKey", prefixBLsk, 32, "BLsk"},
		{"Ed25519Signature", prefixEdsig, 64, "edsig"},
		{"Secp256k1Signature", prefixSpsig, 64, "spsig1"},
		{"P256Signature", prefixP2sig, 64, "p2sig"},
		{"GenericSignature", prefixSig, 64, "sig"},
		{"BLS12_381Signature", prefixBLsig, 96, "BLsig"},
		{"ChainID", prefixChainID, 4, "Net"},
	}
	// The encoding helpers must agree with the table above.
	for _, kt := range KeyTypes {
		for _, e := range []encoding{pkhEncoding(kt), pkEncoding(kt), skEncoding(kt), sigEncoding(kt)} {
			found := false
			for _, o := range ours {
				if bytes.Equal(o.prefix, e.prefix) && o.size == e.size {
					found = true
				}
			}
			if !found {
				t.Errorf("%v: encoding %v/%d is not in the checked table", kt, e.prefix, e.size)
			}
		}
	}
	names := make([]string, len(ours))
	for i, o := range ours {
		names[i] = o.name
	}
	type entry struct {
		Size int      `json:"size"`
		Enc  []string `json:"enc"` // the payloads all 0x00, then all 0xff
	}
	var theirs map[string]entry
	taquito.Run(t, `
		const { b58Encode, payloadLength, PrefixV2 } = require('@taquito/utils');
		const out = {};
		for (const name of input) {
			const p = PrefixV2[name];
			if (p === undefined) continue;
			const n = payloadLength[p];
			out[name] = { size: n, enc: [b58Encode(new Uint8Array(n), p), b58Encode(new Uint8Array(n).fill(255), p)] };
		}
		return out;`, names, &theirs)
	for _, o := range ours {
		th, ok := theirs[o.name]
		if !ok {
			t.Errorf("Taquito has no prefix %s", o.name)
			continue
		}
		if th.Size != o.size {
			t.Errorf("%s: payload of %d bytes, Taquito says %d", o.name, o.size, th.Size)
			continue
		}
		for i, fill := range []byte{0x00, 0xff} {
			s := EncodeBase58Check(o.prefix, bytes.Repeat([]byte{fill}, o.size))
			if s != th.Enc[i] {
				t.Errorf("%s: we encode %s, Taquito %s (prefix %v)", o.name, s, th.Enc[i], o.prefix)
			}
			if len(s) < len(o.lead) || s[:len(o.lead)] != o.lead {
				t.Errorf("%s: encoding starts %q, want %q", o.name, s, o.lead)
			}
		}
	}
}
