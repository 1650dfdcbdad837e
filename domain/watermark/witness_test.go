package watermark

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain"
)

func mk(level, round int32, d byte) Mark {
	return Mark{Level: level, Round: round, Digest: [32]byte{d}}
}

func TestBehind(t *testing.T) {
	w := mk(100, 2, 7)
	for _, tc := range []struct {
		name    string
		backend *Mark
		behind  bool
	}{
		{"no mark", nil, true},
		{"lower level", ptr(mk(99, 9, 7)), true},
		{"same level, lower round", ptr(mk(100, 1, 7)), true},
		{"same position, other message", ptr(mk(100, 2, 8)), true},
		{"same position, same message", ptr(mk(100, 2, 7)), false},
		{"higher round (another daemon)", ptr(mk(100, 3, 1)), false},
		{"higher level (another daemon)", ptr(mk(101, 0, 1)), false},
	} {
		assert.Equal(t, tc.behind, Behind(w, tc.backend), tc.name)
	}
}

func ptr(m Mark) *Mark { return &m }

func TestLags(t *testing.T) {
	const a, b = "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb", "tz1burnburnburnburnburnburnburjAYjjX"
	const net = "NetXdQprcVkpaWU"
	k := func(pkh, kind string) Key { return Key{ChainID: net, PKH: pkh, Kind: kind} }
	witness := []Record{
		{k(b, KindAttestation), mk(10, 0, 1)},
		{k(a, KindBlock), mk(5, 0, 1)},
		{k(a, KindAttestation), mk(7, 0, 1)},
		{k(a, KindPreattestation), mk(7, 0, 1)},
	}
	backend := []Record{
		{k(a, KindBlock), mk(6, 0, 9)},          // above: another daemon
		{k(a, KindAttestation), mk(6, 0, 1)},    // below
		{k(a, KindPreattestation), mk(7, 0, 1)}, // equal
	}
	lags := Lags(witness, backend)
	require.Len(t, lags, 2)
	assert.Equal(t, k(a, KindAttestation), lags[0].Key)
	assert.Equal(t, mk(6, 0, 1), *lags[0].Backend)
	assert.Equal(t, k(b, KindAttestation), lags[1].Key)
	assert.Nil(t, lags[1].Backend)
	assert.Equal(t, "attestation "+b+" on "+net+": the backend holds no mark, this daemon committed level 10 round 0", lags[1].String())
	assert.Empty(t, Lags(witness[1:2], backend), "a backend ahead of the witness is no alarm")
	assert.Len(t, Lags(witness, nil), 4, "an empty backend is behind for every witnessed key")

	err := HeldBack(a, ByKey(lags)[a], "file /x/watermark_v2", "/x/witness/marks.log")
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	for _, want := range []string{a, "level 6 round 0", "level 7 round 0", "/x/witness/marks.log", "file /x/watermark_v2",
		"sigil watermarks import", "--accept-watermark-reset " + a} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestCheckRelease(t *testing.T) {
	k := Key{ChainID: "NetXdQprcVkpaWU", PKH: "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb", Kind: KindAttestation}
	w := mk(100, 0, 1)
	assert.NoError(t, CheckRelease(k, nil, mk(1, 0, 1)), "no witness yet")
	assert.NoError(t, CheckRelease(k, &w, mk(101, 0, 2)))
	assert.NoError(t, CheckRelease(k, &w, mk(100, 0, 1)), "the identical replay")
	for _, r := range []Mark{mk(99, 0, 1), mk(100, 0, 2)} {
		err := CheckRelease(k, &w, r)
		require.Error(t, err)
		assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
		assert.Contains(t, err.Error(), "not released")
	}
}

// A block mark Signatory recorded is witnessed as enforced (its whole
// level) while the backend holds and returns it at its round: the same
// message at that level is never "behind", another message or a lower
// level is.
func TestBehindSignatoryBlockMark(t *testing.T) {
	raw := Mark{Level: 5000, Round: 1, Digest: [32]byte{1}}
	w := FromSignatory(KindBlock, raw)
	if Behind(w, &raw) {
		t.Error("the identical message at its round is behind the whole-level witness")
	}
	other := Mark{Level: 5000, Round: 1, Digest: [32]byte{2}}
	if !Behind(w, &other) {
		t.Error("another message at the level is not behind")
	}
	lower := Mark{Level: 4999, Round: 3, Digest: [32]byte{1}}
	if !Behind(w, &lower) {
		t.Error("a lower level is not behind")
	}
	if lags := Lags([]Record{{Key: Key{Kind: KindBlock, PKH: "tz1", ChainID: "c"}, Mark: w}},
		[]Record{{Key: Key{Kind: KindBlock, PKH: "tz1", ChainID: "c"}, Mark: raw}}); len(lags) != 0 {
		t.Errorf("Lags = %v, want none", lags)
	}
}
