package watermark

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sigil-signer/sigil/domain"
)

// The witness is a second record of the marks, kept by each daemon apart
// from the watermark backend: the highest mark it ever committed per chain,
// key and kind. Marks only rise, so a backend that holds less than the
// witness — no mark, a lower one, or another message at the same level and
// round — has lost marks (a deleted table, an emptied collection, a
// watermark directory lost or replaced, a base_dir, table, region or
// collection that is not the one the daemon used). Signing on it could sign
// again what was signed. Another daemon sharing the backend moving a mark
// higher is normal; only "lower than this daemon's own witness" is the
// alarm. The functions here decide; the adapters keep the record.

// Lag is one mark the backend holds below what this daemon's witness
// recorded.
type Lag struct {
	Key     Key
	Witness Mark  // the highest mark this daemon committed
	Backend *Mark // what the backend holds; nil when it holds none
}

// Behind reports whether the backend's mark (nil: none) is behind the
// witness's w: absent, below it, or at its position with another message.
func Behind(w Mark, backend *Mark) bool {
	if backend != nil && w.Round == WholeLevel && backend.Level == w.Level && backend.Digest == w.Digest {
		// The witness holds a mark Signatory recorded as Sigil enforces
		// it (its whole level, see Enforced) and the backend the very
		// message of that mark at its own round: nothing was lost.
		return false
	}
	if backend == nil || w.Above(*backend) {
		return true
	}
	return w.SamePosition(*backend) && w.Digest != backend.Digest
}

// Lags compares the witness's records with the backend's (an export) and
// returns, sorted by key hash, chain and kind, every key whose backend mark
// is behind the witness.
func Lags(witness, backend []Record) []Lag {
	have := make(map[Key]Mark, len(backend))
	for _, r := range backend {
		// A mark Signatory recorded is compared as Sigil enforces it (a
		// block mark covers its level): the witness may have been set
		// from that enforced mark.
		m := *Enforced(r.Kind, &r.Mark)
		if old, ok := have[r.Key]; !ok || m.Above(old) {
			have[r.Key] = m
		}
	}
	var out []Lag
	for _, w := range witness {
		b, ok := have[w.Key]
		var bp *Mark
		if ok {
			bp = &b
		}
		if Behind(w.Mark, bp) {
			out = append(out, Lag{Key: w.Key, Witness: w.Mark, Backend: bp})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.PKH != b.PKH {
			return a.PKH < b.PKH
		}
		if a.ChainID != b.ChainID {
			return a.ChainID < b.ChainID
		}
		return a.Kind < b.Kind
	})
	return out
}

// String describes the lag with both marks.
func (l Lag) String() string {
	held := "no mark"
	if l.Backend != nil {
		held = l.Backend.String()
		if l.Backend.SamePosition(l.Witness) {
			held += " for another message"
		}
	}
	return fmt.Sprintf("%s: the backend holds %s, this daemon committed %s", l.Key, held, l.Witness)
}

// ByKey groups lags by key hash.
func ByKey(lags []Lag) map[string][]Lag {
	out := map[string][]Lag{}
	for _, l := range lags {
		out[l.Key.PKH] = append(out[l.Key.PKH], l)
	}
	return out
}

// HeldBack is the error of a key whose consensus signing is refused because
// the backend is behind the witness: it names the key, both marks of each
// lagging kind and chain, where each record is, and how to proceed.
func HeldBack(pkh string, lags []Lag, backend, witness string) error {
	parts := make([]string, len(lags))
	for i, l := range lags {
		parts[i] = l.String()
	}
	return domain.Errorf(domain.KindUnavailable,
		"consensus signing with %s is refused: the watermark backend (%s) is behind the watermark witness (%s) for %s. "+
			"The marks were lost, or this is not the backend this daemon used (base_dir, table, region, collection). "+
			"Restore them (`sigil watermarks export --witness -o marks.json`, then `sigil watermarks import marks.json`, or import a backup) and restart; "+
			"or, to sign from the backend's marks anyway, restart with --accept-watermark-reset %s (logged)",
		pkh, backend, witness, strings.Join(parts, "; "), pkh)
}

// CheckRelease is the witness's check of a mark the backend returned from
// a commit, before its signature is released: a mark behind the witness
// (the backend lost marks while the daemon ran) is refused with a
// domain.KindUnavailable error naming both marks. w is the witness's mark
// for k (nil: none).
func CheckRelease(k Key, w *Mark, released Mark) error {
	if w == nil || !Behind(*w, &released) {
		return nil
	}
	return domain.Errorf(domain.KindUnavailable,
		"%s: the watermark backend accepted %s, behind the %s this daemon committed (watermark witness): the backend lost marks; the signature is not released",
		k, released, w)
}
