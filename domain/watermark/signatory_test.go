package watermark

import "testing"

// TestFromSignatory: for a block mark Signatory recorded at payload round p,
// every block that Signatory's reading (level, payload round) or Sigil's
// (level, fitness round) refuses is refused once the mark is enforced.
func TestFromSignatory(t *testing.T) {
	const L, p = 50, 3
	k := Key{ChainID: "NetXdQprcVkpaWU", PKH: "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb", Kind: KindBlock}
	rec := &Mark{Level: L, Round: p, Digest: [32]byte{1}}
	enforced := Enforced(KindBlock, rec)
	if enforced.Signature != "" || enforced.Level != L {
		t.Fatalf("enforced mark %+v", enforced)
	}
	for l := int32(L - 1); l <= L+1; l++ {
		for fitness := int32(0); fitness <= p+3; fitness++ {
			for payload := int32(0); payload <= fitness; payload++ {
				refusedByEither := l < L || l == L && (payload <= p || fitness <= p)
				// Another block (another digest) than the recorded one.
				d, _ := Decide(k, enforced, Mark{Level: l, Round: fitness, Digest: [32]byte{2}})
				if refusedByEither && d != Refuse {
					t.Errorf("block level %d fitness %d payload %d: %v", l, fitness, payload, d)
				}
			}
		}
	}
	if d, _ := Decide(k, enforced, Mark{Level: L + 1}); d != Accept {
		t.Errorf("next level: %v", d)
	}
	// The very block Signatory signed (its digest, at its level) is signed
	// again, whatever round Sigil reads in it.
	for _, fitness := range []int32{p, p + 2} {
		if d, _ := Decide(k, enforced, Mark{Level: L, Round: fitness, Digest: [32]byte{1}}); d != Resign {
			t.Errorf("identical block, fitness round %d: %v", fitness, d)
		}
	}
	// Signed marks (Sigil's) and other kinds are enforced as recorded.
	signed := &Mark{Level: L, Round: p, Signature: "x"}
	if Enforced(KindBlock, signed) != signed {
		t.Error("a signed block mark was changed")
	}
	att := &Mark{Level: L, Round: p}
	if got := Enforced(KindAttestation, att); got != att {
		t.Error("an attestation mark was changed")
	}
}
