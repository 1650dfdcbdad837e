package watermark

import "math"

// WholeLevel is the round of a mark that covers every round of its level.
const WholeLevel = math.MaxInt32

// FromSignatory returns the mark Sigil must enforce for a mark of kind that
// Signatory recorded (any mark without a signature: Sigil records every mark
// with its signature). Signatory records a block at its payload round
// (gotez's BlockSignRequest.GetRound), Sigil at its fitness round; a later
// block of the same level may carry any payload round up to its own fitness
// round, so no single fitness round refuses every block Signatory's mark
// refuses: the block mark covers its whole level. Preattestations and
// attestations read the round alike in both. The result has no signature:
// nothing is replayed from it, and only its very message is signed again
// (Decide's Resign).
func FromSignatory(kind string, m Mark) Mark {
	m.Signature = ""
	if kind == KindBlock {
		m.Round = WholeLevel
	}
	return m
}

// Enforced returns the mark a store decides a request of kind against,
// given the mark it read: an unsigned block mark (Signatory's) covers its
// level, see FromSignatory; any other mark is returned as is.
func Enforced(kind string, recorded *Mark) *Mark {
	if recorded == nil || recorded.Signature != "" || kind != KindBlock {
		return recorded
	}
	m := FromSignatory(kind, *recorded)
	return &m
}
