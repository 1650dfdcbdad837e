package file

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
	"github.com/sigil-signer/sigil/adapters/internal/strictjson"
	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
)

// Signatory's older watermark directories under the base directory. Signatory
// migrates them into watermark_v2 when watermark_v2 does not exist, v1 if
// present, else v0, and then ignores them (with a warning).
const (
	V0DirName = "watermark"    // <chain id>.json: request kind → key hash → {level, round, hash}
	V1DirName = "watermark_v1" // <chain id>.json: key hash → {level, round, order, hash}
)

// maxRound stands for "every round of this level".
const maxRound = watermark.WholeLevel

// v0Mark is one entry of a v0 file (round omitted means 0).
type v0Mark struct {
	Level int32   `json:"level"`
	Round int32   `json:"round"`
	Hash  *string `json:"hash"`
}

// v1Mark is one entry of a v1 file: a single mark per key for all consensus
// kinds, ordered by (level, round, order) with order 0 block, 1
// preendorsement, 2 endorsement; round null for pre-Tenderbake requests.
type v1Mark struct {
	Level int32   `json:"level"`
	Round *int32  `json:"round"`
	Order int     `json:"order"`
	Hash  *string `json:"hash"`
}

// kindAliases maps request kind names Signatory has recorded to the kind
// whose watermark Sigil keeps: the names before the Oxford protocol, and a
// DAL attestation (an attestation: both must never be signed at one level
// and round).
var kindAliases = map[string]string{
	watermark.KindBlock:          watermark.KindBlock,
	watermark.KindPreattestation: watermark.KindPreattestation,
	watermark.KindAttestation:    watermark.KindAttestation,
	"preendorsement":             watermark.KindPreattestation,
	"endorsement":                watermark.KindAttestation,
	"attestation_with_dal":       watermark.KindAttestation,
}

// unwatermarkedKinds are kinds Signatory's v0 files may hold that carry no
// watermark (Sigil keeps none for them).
var unwatermarkedKinds = map[string]bool{"generic": true}

// v1Kinds are the consensus kinds by their v1 order.
var v1Kinds = []struct {
	kind  string
	order int
}{{watermark.KindBlock, 0}, {watermark.KindPreattestation, 1}, {watermark.KindAttestation, 2}}

// fromSignatory is watermark.FromSignatory: what Sigil enforces for a mark
// Signatory recorded (a block mark covers its whole level).
func fromSignatory(kind string, m watermark.Mark) watermark.Mark {
	return watermark.FromSignatory(kind, m)
}

// raiseInto sets marks[pkh][kind] to m unless a higher mark is there.
func raiseInto(marks chainMarks, pkh, kind string, m watermark.Mark) {
	kinds := marks[pkh]
	if kinds == nil {
		kinds = map[string]watermark.Mark{}
		marks[pkh] = kinds
	}
	if old, ok := kinds[kind]; ok && !m.Above(old) {
		return
	}
	kinds[kind] = m
}

// migrate fills the empty watermark_v2 directory dir from Signatory's v1
// directory, or, without one, from its v0 directory, as Signatory does,
// writing one file per chain. When dir already holds chain files, older
// directories are left alone (Signatory ignores them too) with a warning.
// The caller holds the directory lock.
func migrate(base, dir string, log *slog.Logger, rec wm.IORecorder) error {
	has, err := hasChainFiles(dir)
	if err != nil {
		return err
	}
	v0, v1 := filepath.Join(base, V0DirName), filepath.Join(base, V1DirName)
	if has {
		for _, old := range []string{v1, v0} {
			if isDir(old) {
				log.Warn("an older watermark directory of Signatory's is ignored: "+DirName+" is in use; remove it once you no longer need it", "directory", old)
			}
		}
		return nil
	}
	var (
		chains map[string]chainMarks
		from   string
	)
	switch {
	case isDir(v1):
		chains, err = readV1(v1)
		from = v1
	case isDir(v0):
		chains, err = readV0(v0)
		from = v0
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("file watermark: migrating Signatory's watermarks from %s: %w (fix or move the file; nothing was written)", from, err)
	}
	ids := make([]string, 0, len(chains))
	for id := range chains {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	n := 0
	for _, id := range ids {
		data, err := encode(chains[id])
		if err != nil {
			return fmt.Errorf("file watermark: migrating %s: %w", from, err)
		}
		path := filepath.Join(dir, id+".json")
		start := time.Now()
		err = atomicfile.Write(path, data, 0o600, nil)
		rec.Observe("write", start, err, "io")
		if err != nil {
			return domain.Errorf(domain.KindUnavailable, "file watermark: migrating %s: %w", from, err)
		}
		for _, kinds := range chains[id] {
			n += len(kinds)
		}
	}
	log.Info("Signatory's watermarks migrated into "+DirName+"; block marks now cover their whole level, and the old directory can be removed",
		"from", from, "to", dir, "chains", len(ids), "marks", n)
	return nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// hasChainFiles reports whether dir holds a chain file.
func hasChainFiles(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("file watermark: %w", err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			return true, nil
		}
	}
	return false, nil
}

// legacyFiles returns the chain files of an older directory, as Signatory
// lists them (regular files named <chain id>.json).
func legacyFiles(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") {
			continue
		}
		id := strings.TrimSuffix(name, ".json")
		if !watermark.ValidChainID(id) {
			return nil, fmt.Errorf("%s: file name is not a chain id", filepath.Join(dir, name))
		}
		out[id] = filepath.Join(dir, name)
	}
	return out, nil
}

// readLegacy reads path strictly into v.
func readLegacy(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := strictjson.Check(data, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// legacyMark validates one entry and returns its mark (signature empty).
func legacyMark(path, pkh string, level, round int32, hash *string) (watermark.Mark, error) {
	if !watermark.ValidPKH(pkh) {
		return watermark.Mark{}, fmt.Errorf("%s: invalid key hash %q", path, domain.Echo(pkh))
	}
	m := watermark.Mark{Level: level, Round: round}
	if err := m.Validate(); err != nil {
		return watermark.Mark{}, fmt.Errorf("%s: %s: negative level or round", path, pkh)
	}
	if hash != nil {
		d, err := decodePayloadHash(*hash)
		if err != nil {
			return watermark.Mark{}, fmt.Errorf("%s: %s: hash: %v", path, pkh, err)
		}
		m.Digest = d
	}
	return m, nil
}

// readV0 reads a v0 directory: per chain, request kind → key hash → mark.
func readV0(dir string) (map[string]chainMarks, error) {
	files, err := legacyFiles(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]chainMarks{}
	for id, path := range files {
		var raw map[string]map[string]*v0Mark
		if err := readLegacy(path, &raw); err != nil {
			return nil, err
		}
		marks := chainMarks{}
		for kind, byKey := range raw {
			if unwatermarkedKinds[kind] {
				continue
			}
			to, ok := kindAliases[kind]
			if !ok {
				return nil, fmt.Errorf("%s: unknown request kind %q", path, domain.Echo(kind))
			}
			for pkh, e := range byKey {
				if e == nil {
					return nil, fmt.Errorf("%s: null watermark for %s %s", path, kind, pkh)
				}
				m, err := legacyMark(path, pkh, e.Level, e.Round, e.Hash)
				if err != nil {
					return nil, err
				}
				raiseInto(marks, pkh, to, fromSignatory(to, m))
			}
		}
		out[id] = marks
	}
	return out, nil
}

// readV1 reads a v1 directory: per chain, key hash → one mark ordered
// across kinds by (level, round, order). v1 refused a request of kind k at
// (l, r) when (l, r, order(k)) was not above the mark; each kind gets the
// mark that refuses exactly that: (level, round) for kinds at or below the
// recorded order, the position just below it for the others. A null round
// (a request before Tenderbake) covers its whole level.
func readV1(dir string) (map[string]chainMarks, error) {
	files, err := legacyFiles(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]chainMarks{}
	for id, path := range files {
		var raw map[string]*v1Mark
		if err := readLegacy(path, &raw); err != nil {
			return nil, err
		}
		marks := chainMarks{}
		for pkh, e := range raw {
			if e == nil {
				return nil, fmt.Errorf("%s: null watermark for %s", path, pkh)
			}
			round := int32(maxRound)
			if e.Round != nil {
				round = *e.Round
			}
			if e.Order < 0 {
				return nil, fmt.Errorf("%s: %s: negative order %d", path, pkh, e.Order)
			}
			m, err := legacyMark(path, pkh, e.Level, round, e.Hash)
			if err != nil {
				return nil, err
			}
			own := min(e.Order, len(v1Kinds)-1) // Signatory's migration names the mark by its order
			for i, k := range v1Kinds {
				km := m
				switch {
				case k.order > e.Order:
					var ok bool
					if km, ok = below(m); !ok {
						continue
					}
				case i != own:
					km.Digest = [32]byte{} // the hash is of the recorded kind's message
				}
				raiseInto(marks, pkh, k.kind, fromSignatory(k.kind, km))
			}
		}
		out[id] = marks
	}
	return out, nil
}

// below returns the highest position strictly below m's, or false when m is
// at level 0 round 0.
func below(m watermark.Mark) (watermark.Mark, bool) {
	switch {
	case m.Round > 0:
		return watermark.Mark{Level: m.Level, Round: m.Round - 1}, true
	case m.Level > 0:
		return watermark.Mark{Level: m.Level - 1, Round: maxRound}, true
	}
	return watermark.Mark{}, false
}
