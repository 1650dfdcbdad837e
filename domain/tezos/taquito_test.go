package tezos_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/taquito"
)

// prefixEdsk64 is the base58check prefix of the 64-byte edsk form
// (seed ‖ public key), 98 characters.
var prefixEdsk64 = []byte{43, 246, 78, 7}

// forgedTransfer is a forged generic operation (magic byte 0x03): the example
// of Taquito's verifySignature documentation.
const forgedTransfer = "03d0c10e3ed11d7c6e3357f6ef335bab9e8f2bd54d0ce20c482e241191a6e4b8ce6c01be917311d9ac46959750e405d57e268e2ed9e174a80794fbd504e12a4a000141eb3781afed2f69679ff2bbe1c5375950b0e40d00ff000000005e05050505050507070100000024747a32526773486e74516b72794670707352466261313652546656503539684b72654a4d07070100000024747a315a6672455263414c42776d4171776f6e525859565142445439426a4e6a42484a750001"

// testMessages are signed by every key: a forged operation, consensus-like
// payloads, Micheline data, a long message and a one-byte one.
func testMessages(t testing.TB) [][]byte {
	t.Helper()
	op, err := hex.DecodeString(forgedTransfer)
	if err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte{0x03, 0xab, 0xcd, 0x00}, 1000)
	return [][]byte{
		op,
		append([]byte{0x13, 0x7a, 0x06, 0xa7, 0x70}, bytes.Repeat([]byte{0x5a}, 64)...),
		append([]byte{0x11, 0x7a, 0x06, 0xa7, 0x70}, bytes.Repeat([]byte{0x01}, 120)...),
		{0x05, 0x01, 0x00, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'},
		long,
		{0x03},
	}
}

func newKeys(t testing.TB, n int) []tezos.PrivateKey {
	t.Helper()
	var keys []tezos.PrivateKey
	for _, kt := range tezos.KeyTypes {
		for i := 0; i < n; i++ {
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			if err != nil {
				t.Fatalf("generating %v key: %v", kt, err)
			}
			keys = append(keys, sk)
		}
	}
	return keys
}

func mustPublic(t testing.TB, sk tezos.PrivateKey) tezos.PublicKey {
	t.Helper()
	pk, err := sk.Public()
	if err != nil {
		t.Fatalf("%v public key: %v", sk.Type, err)
	}
	return pk
}

// Public Octez/Signatory test keys (sandbox bootstrap and Signatory's
// integration-test accounts), with the addresses Octez reports for them.
var knownKeys = []struct{ sk, pk, pkh string }{
	{"edsk3gUfUPyBSfrS9CCgmCiQsTCHGkviBDusMxDJstFtojtc1zcpsh", "edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav", "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"},
	{"edsk39qAm1fiMjgmPkw1EgQYkMzkJezLNewd7PLNHTkr6w9XA2zdfo", "edpktzNbDAUjUk697W7gYg2CRuBQjyPxbEg8dLccYYwKSKvkPvjtV9", "tz1gjaF81ZRRvdzjobyfVNsAeSC6PScjfQwN"},
	{"spsk1XYsTqUsd7LaLs9a8qpmCvLVJeLEZEXkeAZS5dwcKgUZhv3cYw", "sppk7cvVVMRRtYTdriTB6KQqpXZt9TUwSTcpMWq4FwpvG2eVZ56UuHP", "tz2QPsZoZse4eeahhg5DdfnBDB4VbU1PwgxN"},
	{"p2sk2rUMnnnFPQCB7DBozkCZrFhiZ87ddrpAHbRcww7dwU2WHYUbci", "", "tz3ZbCsUveF3Q6WUNkThT1wyJyhPunanaAXK"},
	{"BLsk1XMDG3iepYGj15mBWc7dYjrkpVVM4VH3y5DyBCN9iAGrELwRbY", "BLpk1nRV5SBB2QCxsiem5Neoywcizr3mkdp167HL1iKFgFvzPhKo4RSy7J8JBh2BgGgVYjNsRGwU", "tz4XXtsYav3fZz2FSDa7hcx4F8sh8SaDWNME"},
}

func TestKnownKeys(t *testing.T) {
	for _, k := range knownKeys {
		sk, err := tezos.ParsePrivateKey(k.sk)
		if err != nil {
			t.Fatalf("parsing the %s secret key: %v", k.pkh, err)
		}
		pk := mustPublic(t, sk)
		if k.pk != "" && pk.String() != k.pk {
			t.Errorf("%s: public key %s, want %s", k.pkh, pk, k.pk)
		}
		if got := pk.Hash().String(); got != k.pkh {
			t.Errorf("key hash %s, want %s", got, k.pkh)
		}
		if sk.Base58() != k.sk {
			t.Errorf("%s: secret key does not round-trip through Base58", k.pkh)
		}
	}
}

// TestTaquitoDerivesSameKeys has Taquito's InMemorySigner load our base58
// secret keys (edsk seed and 64-byte forms, spsk, p2sk, BLsk) and checks it
// derives the same public key and address as we do. For BLS this pins the
// BLsk byte order (little-endian scalar, our binary form being big-endian).
func TestTaquitoDerivesSameKeys(t *testing.T) {
	type key struct {
		SK string `json:"sk"`
	}
	type derived struct {
		PK  string `json:"pk"`
		PKH string `json:"pkh"`
		Err string `json:"err,omitempty"`
	}
	var (
		in   []key
		want []derived
		what []string
	)
	add := func(skStr string, pk tezos.PublicKey, label string) {
		in = append(in, key{skStr})
		want = append(want, derived{PK: pk.String(), PKH: pk.Hash().String()})
		what = append(what, label)
	}
	for _, sk := range newKeys(t, 3) {
		pk := mustPublic(t, sk)
		add(sk.Base58(), pk, sk.Type.String())
		if sk.Type == tezos.Ed25519 {
			long := tezos.EncodeBase58Check(prefixEdsk64, append(bytes.Clone(sk.Bytes), pk.Bytes...))
			back, err := tezos.ParsePrivateKey(long)
			if err != nil || !bytes.Equal(back.Bytes, sk.Bytes) {
				t.Fatalf("64-byte edsk form does not parse back to its seed (err %v)", err)
			}
			add(long, pk, "ed25519 64-byte edsk")
		}
	}
	for _, k := range knownKeys {
		sk, err := tezos.ParsePrivateKey(k.sk)
		if err != nil {
			t.Fatal(err)
		}
		add(k.sk, mustPublic(t, sk), k.pkh)
	}

	var got []derived
	taquito.Run(t, `
		const { InMemorySigner } = require('@taquito/signer');
		const out = [];
		for (const k of input) {
			try {
				const s = new InMemorySigner(k.sk);
				out.push({ pk: await s.publicKey(), pkh: await s.publicKeyHash() });
			} catch (e) {
				out.push({ err: String(e) });
			}
		}
		return out;`, in, &got)
	if len(got) != len(want) {
		t.Fatalf("Taquito returned %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s key #%d: Taquito derives %s / %s, we derive %s / %s",
				what[i], i, got[i].PK, got[i].PKH, want[i].PK, want[i].PKH)
		}
	}
}

type verifyCase struct {
	Msg    string `json:"msg"` // hex
	PK     string `json:"pk"`
	Sig    string `json:"sig"`
	PoP    bool   `json:"pop"`
	Want   bool   `json:"-"`
	Label  string `json:"-"`
	Scheme string `json:"-"`
}

// TestTaquitoVerifiesOurSignatures signs several messages with every key
// type and has Taquito's verifySignature check them: ed25519 and ECDSA over
// Blake2b-256, BLS versions 2 and 255 under the POP-scheme DST, BLS proofs
// of possession with pop=true. BLS version 1 (augmented scheme) must fail
// there, and corrupted signatures must fail too (the oracle can say no).
func TestTaquitoVerifiesOurSignatures(t *testing.T) {
	msgs := testMessages(t)
	var cases []verifyCase
	for _, sk := range newKeys(t, 1) {
		pk := mustPublic(t, sk)
		for mi, msg := range msgs {
			versions := []uint8{tezos.SignVersion2}
			if sk.Type == tezos.BLS && mi < 2 { // BLS pairings are slow in JavaScript: a few messages suffice
				versions = []uint8{tezos.SignVersion1, tezos.SignVersion2, tezos.SignVersionLatest}
			}
			for _, v := range versions {
				sig, err := sk.Sign(msg, v)
				if err != nil {
					t.Fatalf("%v sign v%d: %v", sk.Type, v, err)
				}
				if err := pk.Verify(msg, sig, v); err != nil {
					t.Fatalf("%v: our own Verify(v%d) refuses our signature: %v", sk.Type, v, err)
				}
				want := !(sk.Type == tezos.BLS && v == tezos.SignVersion1)
				label := fmt.Sprintf("%v msg#%d v%d", sk.Type, mi, v)
				cases = append(cases, verifyCase{Msg: hex.EncodeToString(msg), PK: pk.String(), Sig: sig.String(), Want: want, Label: label})
				if mi == 0 && sk.Type != tezos.BLS {
					cases = append(cases, verifyCase{Msg: hex.EncodeToString(msg), PK: pk.String(), Sig: sig.Generic(), Want: true, Label: label + " generic sig"})
				}
				if mi == 0 && v != tezos.SignVersion1 {
					bad := tezos.Signature{Type: sig.Type, Bytes: bytes.Clone(sig.Bytes)}
					bad.Bytes[10] ^= 0x01
					cases = append(cases, verifyCase{Msg: hex.EncodeToString(msg), PK: pk.String(), Sig: bad.String(), Want: false, Label: label + " corrupted"})
					other := append(bytes.Clone(msg), 0)
					cases = append(cases, verifyCase{Msg: hex.EncodeToString(other), PK: pk.String(), Sig: sig.String(), Want: false, Label: label + " other message"})
				}
			}
		}
		if sk.Type == tezos.BLS {
			pop, err := sk.ProvePossession()
			if err != nil {
				t.Fatal(err)
			}
			if err := pk.VerifyPossession(pop); err != nil {
				t.Fatalf("our VerifyPossession refuses our proof: %v", err)
			}
			cases = append(cases,
				verifyCase{Msg: hex.EncodeToString(pk.Bytes), PK: pk.String(), Sig: pop.String(), PoP: true, Want: true, Label: "bls proof of possession"},
				// A proof of possession is not a POP-scheme signature of the key bytes.
				verifyCase{Msg: hex.EncodeToString(pk.Bytes), PK: pk.String(), Sig: pop.String(), PoP: false, Want: false, Label: "bls proof as signature"},
			)
			sig, _ := sk.Sign(pk.Bytes, tezos.SignVersion2)
			cases = append(cases, verifyCase{Msg: hex.EncodeToString(pk.Bytes), PK: pk.String(), Sig: sig.String(), PoP: true, Want: false, Label: "bls signature as proof"})
		}
	}

	var got []bool
	taquito.Run(t, `
		const { verifySignature } = require('@taquito/utils');
		return input.map((c) => verifySignature(c.msg, c.pk, c.sig, undefined, c.pop));`, cases, &got)
	if len(got) != len(cases) {
		t.Fatalf("Taquito returned %d results, want %d", len(got), len(cases))
	}
	for i, c := range cases {
		if got[i] != c.Want {
			t.Errorf("%s: Taquito verifySignature = %v, want %v", c.Label, got[i], c.Want)
		}
	}
}

// TestWeVerifyTaquitoSignatures has Taquito's InMemorySigner sign messages
// (no watermark) with our keys and checks that ParseSignature accepts both
// its prefixed and generic forms and that our Verify accepts them. The
// deterministic schemes must give byte-identical signatures, and Taquito's
// BLS proof of possession must equal ours.
func TestWeVerifyTaquitoSignatures(t *testing.T) {
	msgs := testMessages(t)
	hexMsgs := make([]string, len(msgs))
	for i, m := range msgs {
		hexMsgs[i] = hex.EncodeToString(m)
	}
	keys := newKeys(t, 1)
	type in struct {
		Keys []string `json:"keys"`
		Msgs []string `json:"msgs"`
	}
	type sigs struct {
		PrefixSig string `json:"prefixSig"`
		Sig       string `json:"sig"`
	}
	type out struct {
		Sigs []sigs `json:"sigs"`
		PoP  string `json:"pop"`
	}
	input := in{Msgs: hexMsgs}
	for _, sk := range keys {
		input.Keys = append(input.Keys, sk.Base58())
	}
	var got []out
	taquito.Run(t, `
		const { InMemorySigner } = require('@taquito/signer');
		const res = [];
		for (const sk of input.keys) {
			const s = new InMemorySigner(sk);
			const sigs = [];
			for (const m of input.msgs) {
				const r = await s.sign(m);
				sigs.push({ prefixSig: r.prefixSig, sig: r.sig });
			}
			const pop = s.canProvePossession ? (await s.provePossession()).prefixSig : '';
			res.push({ sigs, pop });
		}
		return res;`, input, &got)
	if len(got) != len(keys) {
		t.Fatalf("Taquito returned %d keys, want %d", len(got), len(keys))
	}
	prefixes := map[tezos.KeyType]string{tezos.Ed25519: "edsig", tezos.Secp256k1: "spsig1", tezos.P256: "p2sig", tezos.BLS: "BLsig"}
	for ki, sk := range keys {
		pk := mustPublic(t, sk)
		for mi, msg := range msgs {
			ts := got[ki].Sigs[mi]
			if !strings.HasPrefix(ts.PrefixSig, prefixes[sk.Type]) {
				t.Fatalf("%v: Taquito signature %q lacks prefix %s", sk.Type, ts.PrefixSig, prefixes[sk.Type])
			}
			sig, err := tezos.ParseSignature(ts.PrefixSig)
			if err != nil {
				t.Fatalf("%v: ParseSignature(Taquito %s…): %v", sk.Type, prefixes[sk.Type], err)
			}
			if sig.Type != sk.Type || sig.String() != ts.PrefixSig {
				t.Errorf("%v: parsed Taquito signature as %v, re-encodes to %s", sk.Type, sig.Type, sig)
			}
			if err := pk.Verify(msg, sig, tezos.SignVersionLatest); err != nil {
				t.Errorf("%v msg#%d: our Verify refuses Taquito's signature: %v", sk.Type, mi, err)
			}
			if sk.Type != tezos.BLS { // Taquito's generic form of a 96-byte BLS signature is not a Tezos encoding
				gen, err := tezos.ParseSignature(ts.Sig)
				if err != nil {
					t.Fatalf("%v: ParseSignature(Taquito sig…): %v", sk.Type, err)
				}
				if gen.Type != 0 || !bytes.Equal(gen.Bytes, sig.Bytes) || gen.String() != ts.Sig {
					t.Errorf("%v: generic signature parsed as %v", sk.Type, gen.Type)
				}
				if err := pk.Verify(msg, gen, 0); err != nil {
					t.Errorf("%v msg#%d: our Verify refuses Taquito's generic signature: %v", sk.Type, mi, err)
				}
			}
			ours, err := sk.Sign(msg, tezos.SignVersionLatest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.Bytes, sig.Bytes) {
				t.Errorf("%v msg#%d: deterministic signatures differ: Taquito %s, ours %s", sk.Type, mi, sig, ours)
			}
		}
		if sk.Type == tezos.BLS {
			ours, err := sk.ProvePossession()
			if err != nil {
				t.Fatal(err)
			}
			if got[ki].PoP != ours.String() {
				t.Errorf("BLS proof of possession: Taquito %s, ours %s", got[ki].PoP, ours)
			}
		}
	}

	// Taquito's documented example: a secp256k1 signature of a forged operation.
	pk, err := tezos.ParsePublicKey("sppk7c7hkPj47yjYFEHX85q46sFJGw6RBrqoVSHwAJAT4e14KJwzoey")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tezos.ParseSignature("spsig1cdLkp1RLgUHAp13aRFkZ6MQDPp7xCnjAExGL3MBSdMDmT6JgQSX8cufyDgJRM3sinFtiCzLbsyP6d365EHoNevxhT47nx")
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify(msgs[0], sig, 0); err != nil {
		t.Errorf("Taquito's documented secp256k1 example does not verify: %v", err)
	}
}
