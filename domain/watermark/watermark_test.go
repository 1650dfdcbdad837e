package watermark

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	chain = "NetXdQprcVkpaWU"
	pkh   = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
)

var key = Key{ChainID: chain, PKH: pkh, Kind: KindBlock}

func mark(level, round int32, d byte, sig string) Mark {
	return Mark{Level: level, Round: round, Digest: [32]byte{d}, Signature: sig}
}

func TestDecide(t *testing.T) {
	rec := mark(120, 2, 1, "sigA")
	cases := []struct {
		name     string
		recorded *Mark
		next     Mark
		want     Decision
	}{
		{"none recorded", nil, mark(0, 0, 9, ""), Accept},
		{"higher round", &rec, mark(120, 3, 9, ""), Accept},
		{"higher level lower round", &rec, mark(121, 0, 9, ""), Accept},
		{"identical", &rec, mark(120, 2, 1, ""), Replay},
		{"same position other digest", &rec, mark(120, 2, 9, ""), Refuse},
		{"lower round", &rec, mark(120, 1, 9, ""), Refuse},
		{"lower round same digest", &rec, mark(120, 1, 1, ""), Refuse},
		{"lower level higher round", &rec, mark(119, 5, 9, ""), Refuse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Decide(key, c.recorded, c.next)
			assert.Equal(t, c.want, d)
			if c.want == Refuse {
				require.Error(t, err)
				assert.Equal(t, domain.KindConflict, domain.KindOf(err))
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func TestDecideMessage(t *testing.T) {
	rec := mark(120, 2, 1, "sigA")
	_, err := Decide(key, &rec, mark(120, 1, 2, ""))
	require.Error(t, err)
	assert.Equal(t, "block level 120 round 1 is not above the recorded level 120 round 2 for "+pkh+" on "+chain, err.Error())
}

// TestDecideWithoutSignature: a mark recorded with its digest but no
// signature (Signatory's) lets the very same message be signed again, and
// refuses everything else at or below it.
func TestDecideWithoutSignature(t *testing.T) {
	rec := mark(120, 2, 1, "")
	whole := Mark{Level: 120, Round: WholeLevel, Digest: [32]byte{1}}
	noHash := Mark{Level: 120, Round: 2}
	cases := []struct {
		name     string
		recorded Mark
		next     Mark
		want     Decision
	}{
		{"identical", rec, mark(120, 2, 1, ""), Resign},
		{"same position other digest", rec, mark(120, 2, 9, ""), Refuse},
		{"same digest lower round", rec, mark(120, 1, 1, ""), Refuse},
		{"same digest lower level", rec, mark(119, 2, 1, ""), Refuse},
		{"lower", rec, mark(119, 7, 9, ""), Refuse},
		{"higher round", rec, mark(120, 3, 9, ""), Accept},
		{"higher level", rec, mark(121, 0, 1, ""), Accept},
		{"whole level: identical", whole, mark(120, 2, 1, ""), Resign},
		{"whole level: identical at round 0", whole, mark(120, 0, 1, ""), Resign},
		{"whole level: other digest", whole, mark(120, 9, 2, ""), Refuse},
		{"whole level: same digest other level", whole, mark(119, 2, 1, ""), Refuse},
		{"whole level: next level", whole, mark(121, 0, 2, ""), Accept},
		{"no digest recorded", noHash, Mark{Level: 120, Round: 2}, Refuse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Decide(key, &c.recorded, c.next)
			assert.Equal(t, c.want, d)
			if c.want == Refuse {
				assert.Equal(t, domain.KindConflict, domain.KindOf(err))
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func TestDecideInvalid(t *testing.T) {
	d, err := Decide(key, nil, mark(-1, 0, 0, ""))
	assert.Equal(t, Refuse, d)
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

func TestKeyValidate(t *testing.T) {
	require.NoError(t, key.Validate())
	for _, k := range []Key{
		{ChainID: "../etc/passwd00", PKH: pkh, Kind: KindBlock},
		{ChainID: "NetXdQprcVkpaW", PKH: pkh, Kind: KindBlock},
		{ChainID: chain, PKH: "tz5KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx", Kind: KindBlock},
		{ChainID: chain, PKH: "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZS0", Kind: KindBlock},
		{ChainID: chain, PKH: pkh, Kind: "generic"},
	} {
		err := k.Validate()
		require.Error(t, err, k)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	}
}

func TestValidateCommit(t *testing.T) {
	valid := tezos.Signature{Bytes: make([]byte, 64)}.String()
	assert.NoError(t, ValidateCommit(key, mark(1, 0, 0, valid)))
	assert.Equal(t, domain.KindInvalid, domain.KindOf(ValidateCommit(key, mark(1, 0, 0, "not-a-signature"))), "garbage signature")
	assert.Equal(t, domain.KindInvalid, domain.KindOf(ValidateCommit(key, mark(1, 0, 0, ""))))
	assert.Equal(t, domain.KindInvalid, domain.KindOf(ValidateCommit(key, mark(1, -1, 0, "s"))))
}

func TestRaise(t *testing.T) {
	rec := mark(10, 1, 1, "")
	m, changed := Raise(nil, rec)
	assert.True(t, changed)
	assert.Equal(t, rec, m)

	m, changed = Raise(&rec, mark(10, 0, 2, "x"))
	assert.False(t, changed)
	assert.Equal(t, rec, m)

	m, changed = Raise(&rec, mark(10, 1, 2, "x"))
	assert.False(t, changed, "same position, other digest: keep recorded")
	assert.Equal(t, rec, m)

	m, changed = Raise(&rec, mark(10, 1, 1, "x"))
	assert.True(t, changed, "learns the signature")
	assert.Equal(t, mark(10, 1, 1, "x"), m)

	m, changed = Raise(&rec, mark(11, 0, 3, "y"))
	assert.True(t, changed)
	assert.Equal(t, mark(11, 0, 3, "y"), m)
}

func TestRecordJSON(t *testing.T) {
	sig := tezos.Signature{Type: tezos.Ed25519, Bytes: make([]byte, 64)}.String()
	r := Record{Key: key, Mark: mark(120, 2, 0xab, sig)}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	want := `{"chain_id":"` + chain + `","pkh":"` + pkh + `","kind":"block","level":120,"round":2,"digest":"ab` +
		strings.Repeat("0", 62) + `","signature":"` + sig + `"}`
	assert.JSONEq(t, want, string(b))

	var back Record
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, r, back)

	for _, bad := range []string{
		`{"chain_id":"` + chain + `","pkh":"` + pkh + `","kind":"block","level":1,"round":0,"digest":"zz"}`,
		`{"chain_id":"` + chain + `","pkh":"` + pkh + `","kind":"generic","level":1,"round":0,"digest":"` + strings.Repeat("0", 64) + `"}`,
		`{"chain_id":"` + chain + `","pkh":"` + pkh + `","kind":"block","level":-1,"round":0,"digest":"` + strings.Repeat("0", 64) + `"}`,
		`{"chain_id":"` + chain + `","pkh":"` + pkh + `","kind":"block","level":"x"}`,
		`{"chain_id":"` + chain + `","pkh":"` + pkh + `","kind":"block","level":1,"round":0,"digest":"` + strings.Repeat("0", 64) + `","signature":"not-a-signature"}`,
		`[1]`,
	} {
		var r Record
		err := json.Unmarshal([]byte(bad), &r)
		require.Error(t, err, bad)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), bad)
	}
}

// VerifyRecords accepts a record whose signature was made by its key over
// its digest (or, for BLS, is a valid signature), and refuses garbage, a
// signature by another key, a signature of another digest and an unknown key.
func TestVerifyRecords(t *testing.T) {
	keys := map[string]tezos.PublicKey{}
	var good []Record
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		pk, _ := sk.Public()
		keys[pk.Hash().String()] = pk
		msg := []byte{0x13, byte(kt), 1, 2, 3}
		sig, err := sk.Sign(msg, tezos.SignVersion2)
		require.NoError(t, err)
		good = append(good, Record{Key: Key{ChainID: chain, PKH: pk.Hash().String(), Kind: KindAttestation},
			Mark: Mark{Level: 5, Round: 0, Digest: tezos.Digest(msg), Signature: sig.String()}})
	}
	lookup := func(p string) (tezos.PublicKey, bool) { pk, ok := keys[p]; return pk, ok }
	require.NoError(t, VerifyRecords(good, lookup))
	require.NoError(t, VerifyRecords([]Record{{Key: Key{PKH: "tz1unknown"}, Mark: Mark{}}}, lookup), "no signature, no check")

	otherDigest := good[0]
	otherDigest.Digest[0] ^= 1
	byOther := good[1]
	byOther.Signature = good[2].Signature // a P-256 signature on a secp256k1 record
	garbageBLS := good[3]
	raw := make([]byte, 96)
	raw[0] = 0xc0 | 0x20 // compressed flag, not a point
	raw[5] = 7
	garbageBLS.Signature = tezos.Signature{Type: tezos.BLS, Bytes: raw}.String()
	unknown := good[0]
	unknown.PKH = "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb"
	for name, rec := range map[string]Record{"other digest": otherDigest, "other key": byOther, "invalid BLS point": garbageBLS, "unknown key": unknown} {
		err := VerifyRecords([]Record{good[0], rec}, lookup)
		require.Error(t, err, name)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), name)
		assert.Contains(t, err.Error(), "record 2", name)
	}
}
