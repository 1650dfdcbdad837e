package file

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
)

const (
	pkhA = "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb"
	pkhB = "tz3Qa3kjWa6fr2UabN4axBvYzC44XdY4Pb9r"
)

// writeLegacy writes name under base/sub as Signatory wrote it.
func writeLegacy(t *testing.T, base, sub, name, content string) {
	t.Helper()
	d := filepath.Join(base, sub)
	require.NoError(t, os.MkdirAll(d, 0o770))
	require.NoError(t, os.WriteFile(filepath.Join(d, name), []byte(content), 0o660))
}

// open opens the store under base with a logger writing to the returned
// buffer.
func openLogged(t *testing.T, base string) (*Store, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	s, err := Open(Config{BaseDir: base, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, &buf
}

func mark(t *testing.T, s *Store, pkh, kind string) (watermark.Mark, bool) {
	t.Helper()
	m, ok, err := s.Check(context.Background(), watermark.Key{ChainID: chainID, PKH: pkh, Kind: kind})
	require.NoError(t, err)
	return m, ok
}

// refuses reports whether the store refuses a request at (level, round) of
// kind for pkh (a fresh digest: never a replay).
func refuses(t *testing.T, s *Store, pkh, kind string, level, round int32) bool {
	t.Helper()
	k := watermark.Key{ChainID: chainID, PKH: pkh, Kind: kind}
	rec, ok := mark(t, s, pkh, kind)
	var recorded *watermark.Mark
	if ok {
		recorded = &rec
	}
	d, _ := watermark.Decide(k, recorded, watermark.Mark{Level: level, Round: round, Digest: [32]byte{0xee}})
	return d != watermark.Accept
}

// TestMigrateV0 migrates a v0 directory (request kind → key hash → mark,
// round omitted when 0, as Signatory wrote it) into watermark_v2.
func TestMigrateV0(t *testing.T) {
	base := t.TempDir()
	vh := encodePayloadHash([32]byte{7})
	writeLegacy(t, base, V0DirName, chainID+".json", fmt.Sprintf(`{
    "block": {
        "%[1]s": {
            "round": 1,
            "level": 300,
            "hash": %[3]q
        }
    },
    "endorsement": {
        "%[1]s": {
            "round": 2,
            "level": 299,
            "hash": null
        },
        "%[2]s": {
            "level": 50,
            "hash": null
        }
    },
    "preendorsement": {
        "%[1]s": {
            "level": 299,
            "hash": null
        }
    },
    "generic": {
        "%[1]s": {
            "level": 1000,
            "hash": null
        }
    }
}
`, pkhA, pkhB, vh))
	s, log := openLogged(t, base)

	b, ok := mark(t, s, pkhA, watermark.KindBlock)
	require.True(t, ok)
	assert.Equal(t, watermark.Mark{Level: 300, Round: maxRound, Digest: [32]byte{7}}, b, "a block mark covers its level")
	a, _ := mark(t, s, pkhA, watermark.KindAttestation)
	assert.Equal(t, watermark.Mark{Level: 299, Round: 2}, a)
	p, _ := mark(t, s, pkhA, watermark.KindPreattestation)
	assert.Equal(t, watermark.Mark{Level: 299, Round: 0}, p)
	a, _ = mark(t, s, pkhB, watermark.KindAttestation)
	assert.Equal(t, watermark.Mark{Level: 50, Round: 0}, a)
	_, ok = mark(t, s, pkhB, watermark.KindBlock)
	assert.False(t, ok)
	assert.Contains(t, log.String(), "migrated")

	// Written to watermark_v2. Nothing is replayed from a migrated mark: the
	// very block it records (its hash) is signed again, nothing recorded;
	// another block at that level is refused.
	_, err := os.Stat(filepath.Join(base, DirName, chainID+".json"))
	require.NoError(t, err)
	kb := watermark.Key{ChainID: chainID, PKH: pkhA, Kind: watermark.KindBlock}
	again := watermark.Mark{Level: 300, Round: 1, Digest: [32]byte{7}, Signature: watermarktest.Sig("x")}
	got, err := s.Commit(context.Background(), kb, again)
	require.NoError(t, err)
	assert.Equal(t, again, got)
	_, err = s.Commit(context.Background(), kb, watermark.Mark{Level: 300, Round: 1, Digest: [32]byte{8}, Signature: watermarktest.Sig("x")})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))
	b, _ = mark(t, s, pkhA, watermark.KindBlock)
	assert.Equal(t, watermark.Mark{Level: 300, Round: maxRound, Digest: [32]byte{7}}, b, "nothing recorded")
	require.NoError(t, s.Close())

	// Reopened: the marks come from watermark_v2; the old directory is
	// left alone, with a warning.
	s2, log2 := openLogged(t, base)
	b2, _ := mark(t, s2, pkhA, watermark.KindBlock)
	assert.Equal(t, b, b2)
	assert.Contains(t, log2.String(), "ignored")
	assert.NotContains(t, log2.String(), "migrated")
}

// v1File is a v1 chain file as Signatory wrote it: one mark per key with its
// order (0 block, 1 preendorsement, 2 endorsement).
func v1File(entries map[string]string) string {
	var parts []string
	for pkh, e := range entries {
		parts = append(parts, fmt.Sprintf("    %q: %s", pkh, e))
	}
	return "{\n" + strings.Join(parts, ",\n") + "\n}\n"
}

// TestMigrateV1 checks, over a grid of requests, that every migrated v1 mark
// refuses exactly what v1 refused for preattestations and attestations
// ((level, round, order) not above the mark), and for blocks at least that
// and every block of the recorded level.
func TestMigrateV1(t *testing.T) {
	order := map[string]int{watermark.KindBlock: 0, watermark.KindPreattestation: 1, watermark.KindAttestation: 2}
	for _, tc := range []struct {
		name         string
		level, round int32
		nullRound    bool
		order        int
	}{
		{"endorsement", 500, 2, false, 2},
		{"preendorsement", 500, 2, false, 1},
		{"block", 500, 2, false, 0},
		{"round 0", 500, 0, false, 1},
		{"no round", 500, 0, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			round := fmt.Sprint(tc.round)
			if tc.nullRound {
				round = "null"
			}
			writeLegacy(t, base, V1DirName, chainID+".json", v1File(map[string]string{
				pkhA: fmt.Sprintf(`{
        "level": %d,
        "round": %s,
        "order": %d,
        "hash": null
    }`, tc.level, round, tc.order),
			}))
			s, _ := openLogged(t, base)
			for kind, o := range order {
				for l := tc.level - 1; l <= tc.level+1; l++ {
					for r := int32(0); r <= tc.round+2; r++ {
						var v1Refuses bool
						switch {
						case tc.nullRound:
							// v1 compared a None round as incomparable
							// with any round: refused at that level.
							v1Refuses = l <= tc.level
						case l != tc.level:
							v1Refuses = l < tc.level
						case r != tc.round:
							v1Refuses = r < tc.round
						default:
							v1Refuses = o <= tc.order
						}
						got := refuses(t, s, pkhA, kind, l, r)
						if v1Refuses && !got {
							t.Errorf("%s at level %d round %d: v1 refused it, the migrated mark accepts it", kind, l, r)
						}
						if kind == watermark.KindBlock {
							if l == tc.level && !got {
								t.Errorf("block at level %d round %d accepted: a block mark covers its level", l, r)
							}
						} else if got && !v1Refuses {
							t.Errorf("%s at level %d round %d: refused, v1 accepted it", kind, l, r)
						}
					}
				}
			}
		})
	}
}

// TestSignatoryBlockMarkReadings: for a block mark Signatory recorded at
// payload round p, every block that Signatory's reading (level, payload
// round) or Sigil's (level, fitness round) refuses is refused, whichever way
// the mark reached watermark_v2 (read as is, or migrated from v0 or v1).
func TestSignatoryBlockMarkReadings(t *testing.T) {
	const L, p = 800, 2
	layouts := map[string]func(base string){
		"v2": func(base string) {
			writeLegacy(t, base, DirName, chainID+".json", fmt.Sprintf(`{
    %q: {
        "block": {
            "level": %d,
            "round": %d,
            "hash": null
        }
    }
}`, pkhA, L, p))
		},
		"v1": func(base string) {
			writeLegacy(t, base, V1DirName, chainID+".json", v1File(map[string]string{pkhA: fmt.Sprintf(`{"level": %d, "round": %d, "order": 0, "hash": null}`, L, p)}))
		},
		"v0": func(base string) {
			writeLegacy(t, base, V0DirName, chainID+".json", fmt.Sprintf(`{"block": {%q: {"round": %d, "level": %d, "hash": null}}}`, pkhA, p, L))
		},
	}
	for name, lay := range layouts {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			lay(base)
			s, _ := openLogged(t, base)
			for l := int32(L - 1); l <= L+1; l++ {
				for fitness := int32(0); fitness <= p+3; fitness++ {
					for payload := int32(0); payload <= fitness; payload++ {
						signatory := l < L || l == L && payload <= p
						sigil := l < L || l == L && fitness <= p
						if (signatory || sigil) && !refuses(t, s, pkhA, watermark.KindBlock, l, fitness) {
							t.Errorf("block at level %d fitness round %d payload round %d accepted; refused by %s's reading",
								l, fitness, payload, map[bool]string{true: "Signatory", false: "Sigil"}[signatory])
						}
					}
				}
			}
			assert.False(t, refuses(t, s, pkhA, watermark.KindBlock, L+1, 0), "the next level is free")
		})
	}
}

// TestMigrationOrder: with v1 and v0 both present, v1 is migrated (as
// Signatory does); with watermark_v2 in use, neither is.
func TestMigrationOrder(t *testing.T) {
	base := t.TempDir()
	writeLegacy(t, base, V1DirName, chainID+".json", v1File(map[string]string{pkhA: `{"level": 10, "round": 0, "order": 2, "hash": null}`}))
	writeLegacy(t, base, V0DirName, chainID+".json", `{"endorsement": {"`+pkhA+`": {"level": 99, "hash": null}}}`)
	s, _ := openLogged(t, base)
	a, _ := mark(t, s, pkhA, watermark.KindAttestation)
	assert.Equal(t, int32(10), a.Level, "v1 wins over v0")
	require.NoError(t, s.Close())

	base2 := t.TempDir()
	writeLegacy(t, base2, DirName, watermarktest.Ghostnet+".json", `{"`+pkhB+`": {"attestation": {"level": 1, "round": 0, "hash": null}}}`)
	writeLegacy(t, base2, V1DirName, chainID+".json", v1File(map[string]string{pkhA: `{"level": 10, "round": 0, "order": 2, "hash": null}`}))
	s2, log := openLogged(t, base2)
	_, ok := mark(t, s2, pkhA, watermark.KindAttestation)
	assert.False(t, ok, "watermark_v2 in use: watermark_v1 is not read")
	assert.Contains(t, log.String(), V1DirName)
}

// TestMigrationRefusesBadFiles: a legacy file that does not parse stops the
// store from opening, names the file, and writes nothing.
func TestMigrationRefusesBadFiles(t *testing.T) {
	for name, tc := range map[string]struct{ sub, content, want string }{
		"v1 syntax":       {V1DirName, `{"` + pkhA + `": {"level": 1,`, "watermark_v1"},
		"v1 unknown":      {V1DirName, `{"` + pkhA + `": {"level": 1, "round": 0, "order": 0, "lvl": 3}}`, "lvl"},
		"v1 bad pkh":      {V1DirName, `{"tz1nope": {"level": 1, "round": 0, "order": 0}}`, "invalid key hash"},
		"v1 negative":     {V1DirName, `{"` + pkhA + `": {"level": -1, "round": 0, "order": 0}}`, "negative"},
		"v0 unknown kind": {V0DirName, `{"ballot": {"` + pkhA + `": {"level": 1}}}`, `unknown request kind "ballot"`},
		"v0 bad hash":     {V0DirName, `{"block": {"` + pkhA + `": {"level": 1, "hash": "vhX"}}}`, "hash"},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			writeLegacy(t, base, tc.sub, chainID+".json", tc.content)
			_, err := Open(Config{BaseDir: base})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), filepath.Join(base, tc.sub))
			ents, err := os.ReadDir(filepath.Join(base, DirName))
			require.NoError(t, err)
			for _, e := range ents {
				assert.False(t, strings.HasSuffix(e.Name(), ".json"), "wrote %s", e.Name())
			}
			// Once the file is fixed, the store opens.
			require.NoError(t, os.Remove(filepath.Join(base, tc.sub, chainID+".json")))
			s, err := Open(Config{BaseDir: base})
			require.NoError(t, err)
			s.Close()
		})
	}
}
