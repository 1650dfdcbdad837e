package file

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	chainID  = watermarktest.Mainnet
	childEnv = "SIGIL_WATERMARK_FILE_CHILD"
)

// TestMain doubles as the child process of TestKill9: with childEnv set to
// "dir|pkh" it commits one mark, prints "committed" and waits to be killed.
func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		dir, pkh, _ := strings.Cut(v, "|")
		s, err := Open(Config{BaseDir: dir})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		k := watermark.Key{ChainID: chainID, PKH: pkh, Kind: watermark.KindBlock}
		if _, err := s.Commit(context.Background(), k, watermarktest.M(500, 3, 0xaa, "childsig")); err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println("committed")
		select {}
	}
	os.Exit(m.Run())
}

func openT(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Config{BaseDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	watermarktest.Run(t, func(t testing.TB) ports.WatermarkStore { return openT(t, t.TempDir()) })
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	k := watermarktest.Key(chainID, watermark.KindAttestation)
	m := watermarktest.M(42, 1, 7, "edsigFirst")
	_, err := s.Commit(ctx, k, m)
	require.NoError(t, err)

	_, err = Open(Config{BaseDir: dir})
	require.ErrorContains(t, err, "in use", "a second store on one directory is refused")
	require.NoError(t, s.Close())

	s2 := openT(t, dir)
	got, ok, err := s2.Check(ctx, k)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, m, got)
	got, err = s2.Commit(ctx, k, watermarktest.M(42, 1, 7, "edsigOther"))
	require.NoError(t, err)
	assert.Equal(t, watermarktest.Sig("edsigFirst"), got.Signature, "the signature survived the restart")
	_, err = s2.Commit(ctx, k, watermarktest.M(42, 1, 8, "x"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err))

	wd := filepath.Join(dir, DirName)
	fi, err := os.Stat(wd)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(wd, chainID+".json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	ents, err := os.ReadDir(wd)
	require.NoError(t, err)
	for _, e := range ents {
		assert.NotContains(t, e.Name(), ".tmp-", "no temporary file left behind")
	}
}

// TestSignatoryFormat reads a file as Signatory writes it (no signature):
// the block mark, recorded by Signatory at its payload round, covers its
// whole level; the older name "endorsement" counts as an attestation; what
// Sigil writes keeps Signatory's fields.
func TestSignatoryFormat(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	wd := filepath.Join(dir, DirName)
	require.NoError(t, os.MkdirAll(wd, 0o700))
	pkh := watermarktest.PKH()
	digest := [32]byte{1, 2, 3}
	vh := encodePayloadHash(digest)
	require.True(t, strings.HasPrefix(vh, "vh"), vh)
	require.Len(t, vh, 52)
	content := fmt.Sprintf(`{"%s": {"block": {"level": 120, "round": 2, "hash": %q},
		"preattestation": {"level": 119, "round": 0, "hash": null},
		"endorsement": {"level": 5, "round": 1, "hash": null}}}`, pkh, vh)
	require.NoError(t, os.WriteFile(filepath.Join(wd, chainID+".json"), []byte(content), 0o600))

	s := openT(t, dir)
	k := watermark.Key{ChainID: chainID, PKH: pkh, Kind: watermark.KindBlock}
	got, ok, err := s.Check(ctx, k)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, watermark.Mark{Level: 120, Round: maxRound, Digest: digest}, got)
	for _, round := range []int32{2, 3, 40} {
		_, err = s.Commit(ctx, k, watermark.Mark{Level: 120, Round: round, Digest: [32]byte{7}, Signature: watermarktest.Sig("x")})
		assert.Equal(t, domain.KindConflict, domain.KindOf(err), "block at level 120 round %d after Signatory's mark at payload round 2", round)
	}
	// The very block Signatory signed (its hash) is signed again; the mark
	// stays Signatory's.
	again := watermark.Mark{Level: 120, Round: 2, Digest: digest, Signature: watermarktest.Sig("again")}
	got, err = s.Commit(ctx, k, again)
	require.NoError(t, err)
	assert.Equal(t, again, got)
	got, _, err = s.Check(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, watermark.Mark{Level: 120, Round: maxRound, Digest: digest}, got, "nothing recorded")
	got, ok, err = s.Check(ctx, watermark.Key{ChainID: chainID, PKH: pkh, Kind: watermark.KindAttestation})
	require.NoError(t, err)
	require.True(t, ok, "the endorsement mark is kept as the attestation mark")
	assert.Equal(t, watermark.Mark{Level: 5, Round: 1, Digest: [32]byte{}}, got)
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 121, Round: 0, Digest: [32]byte{9}, Signature: watermarktest.Sig("edsigNew")})
	require.NoError(t, err)

	raw, err := os.ReadFile(filepath.Join(wd, chainID+".json"))
	require.NoError(t, err)
	var f map[string]map[string]map[string]any
	require.NoError(t, json.Unmarshal(raw, &f))
	assert.Equal(t, map[string]any{
		"level": float64(121), "round": float64(0), "hash": encodePayloadHash([32]byte{9}), "signature": watermarktest.Sig("edsigNew"),
	}, f[pkh]["block"])
	assert.Equal(t, float64(119), f[pkh]["preattestation"]["level"])
	assert.Equal(t, float64(5), f[pkh]["attestation"]["level"])
	assert.NotContains(t, f[pkh], "endorsement")
}

func TestPayloadHash(t *testing.T) {
	for _, d := range [][32]byte{{}, {0xff, 1}, {31: 0xff}} {
		back, err := decodePayloadHash(encodePayloadHash(d))
		require.NoError(t, err)
		assert.Equal(t, d, back)
	}
	// Encodings computed by Taquito (@taquito/utils b58Encode with
	// PrefixV2.ValueHash), an independent base58check implementation.
	for hexDigest, want := range map[string]string{
		"0500000000000000000000000000000000000000000000000000000000000000": "vh1iKqDaxkeWVMp3nwzGLJtoqMk6EtcU5w9Z4RmoBfbfSkdKyk6R",
		"ff01000000000000000000000000000000000000000000000000000000000000": "vh3cRr3WDjyJmu7wkkap31qwz2dRtiowiQFfcsYwhV4W6hcAZUuD",
		"00000000000000000000000000000000000000000000000000000000000000ff": "vh1g87ZG6scSYxKhspAUzprQVuLAyoa5qMBKcUfjgnQGnkNo5heG",
		"0000000000000000000000000000000000000000000000000000000000000000": "vh1g87ZG6scSYxKhspAUzprQVuLAyoa5qMBKcUfjgnQGnFb3dJcG",
	} {
		var d [32]byte
		_, err := hex.Decode(d[:], []byte(hexDigest))
		require.NoError(t, err)
		assert.Equal(t, want, encodePayloadHash(d), hexDigest)
		back, err := decodePayloadHash(want)
		require.NoError(t, err)
		assert.Equal(t, d, back, want)
	}
	vh := encodePayloadHash([32]byte{5})
	for _, bad := range []string{"", "vh", vh[:51], vh[:51] + "1", "0" + vh[1:], strings.Repeat("z", 100)} {
		_, err := decodePayloadHash(bad)
		assert.Error(t, err, bad)
	}
}

func TestCorrupt(t *testing.T) {
	pkh := watermarktest.PKH()
	cases := map[string]string{
		"garbage":       "{not json",
		"empty":         "",
		"array":         "[]",
		"null":          "null",
		"trailing":      `{} {}`,
		"bad pkh":       `{"tz9xx": {"block": {"level": 1, "round": 0, "hash": null}}}`,
		"bad kind":      fmt.Sprintf(`{%q: {"generic": {"level": 1, "round": 0, "hash": null}}}`, pkh),
		"bad hash":      fmt.Sprintf(`{%q: {"block": {"level": 1, "round": 0, "hash": "vhXYZ"}}}`, pkh),
		"negative":      fmt.Sprintf(`{%q: {"block": {"level": -1, "round": 0, "hash": null}}}`, pkh),
		"wrong type":    fmt.Sprintf(`{%q: {"block": {"level": "1", "round": 0}}}`, pkh),
		"null mark":     fmt.Sprintf(`{%q: {"block": null}}`, pkh),
		"level too big": fmt.Sprintf(`{%q: {"block": {"level": 4294967296, "round": 0}}}`, pkh),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			wd := filepath.Join(dir, DirName)
			require.NoError(t, os.MkdirAll(wd, 0o700))
			path := filepath.Join(wd, chainID+".json")
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			_, err := Open(Config{BaseDir: dir})
			require.Error(t, err)
			assert.Contains(t, err.Error(), path, "the error names the file")
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, content, string(raw), "the file is left as it was")
			// The lock was released: once repaired, the directory opens.
			require.NoError(t, os.WriteFile(path, []byte("{}"), 0o600))
			s, err := Open(Config{BaseDir: dir})
			require.NoError(t, err)
			s.Close()
		})
	}
}

func TestBadFileName(t *testing.T) {
	dir := t.TempDir()
	wd := filepath.Join(dir, DirName)
	require.NoError(t, os.MkdirAll(wd, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(wd, "notachain.json"), []byte("{}"), 0o600))
	_, err := Open(Config{BaseDir: dir})
	require.ErrorContains(t, err, "notachain.json")
	_, err = Open(Config{})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

func TestStaleTempRemoved(t *testing.T) {
	dir := t.TempDir()
	wd := filepath.Join(dir, DirName)
	require.NoError(t, os.MkdirAll(wd, 0o700))
	stale := filepath.Join(wd, "."+chainID+".json.tmp-123")
	require.NoError(t, os.WriteFile(stale, []byte("{half"), 0o600))
	openT(t, dir)
	_, err := os.Stat(stale)
	assert.True(t, os.IsNotExist(err), "stale temporary file removed")
}

// TestWriteFailure: when the file cannot be written, Commit fails with
// KindUnavailable and records nothing.
func TestWriteFailure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	// A directory where the chain's file should be makes the rename fail.
	require.NoError(t, os.Mkdir(filepath.Join(dir, DirName, watermarktest.Ghostnet+".json"), 0o700))
	k := watermarktest.Key(watermarktest.Ghostnet, watermark.KindBlock)
	_, err := s.Commit(ctx, k, watermarktest.M(1, 0, 1, "s"))
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	_, ok, err := s.Check(ctx, k)
	require.NoError(t, err)
	assert.False(t, ok, "a mark that is not durable is not recorded")
	ents, err := os.ReadDir(filepath.Join(dir, DirName))
	require.NoError(t, err)
	for _, e := range ents {
		assert.NotContains(t, e.Name(), ".tmp-")
	}
}

// TestKill9 commits in a child process that is SIGKILLed right after it
// reports the commit; the mark must be on disk.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	pkh := watermarktest.PKH()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir+"|"+pkh)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		line <- sc.Text()
	}()
	select {
	case l := <-line:
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		require.Equal(t, "committed", l)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child did not commit in time")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())

	ctx := context.Background()
	s := openT(t, dir)
	k := watermark.Key{ChainID: chainID, PKH: pkh, Kind: watermark.KindBlock}
	got, ok, err := s.Check(ctx, k)
	require.NoError(t, err)
	require.True(t, ok, "the mark survived kill -9")
	assert.Equal(t, watermarktest.M(500, 3, 0xaa, "childsig"), got)
	_, err = s.Commit(ctx, k, watermarktest.M(500, 3, 0xbb, "other"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "same level/round, other digest refused")
	got, err = s.Commit(ctx, k, watermarktest.M(500, 3, 0xaa, "other"))
	require.NoError(t, err)
	assert.Equal(t, watermarktest.Sig("childsig"), got.Signature)
}

func BenchmarkCommit(b *testing.B) {
	s := openT(b, b.TempDir())
	watermarktest.BenchmarkCommit(b, s)
}

func BenchmarkCommitParallel(b *testing.B) {
	s := openT(b, b.TempDir())
	watermarktest.BenchmarkCommitParallel(b, s)
}

// A chain file is decoded strictly: a case-variant duplicate ("Level" next
// to "level", which encoding/json would resolve to the last), an unknown
// field, or a signature that does not parse make the file corrupt, and the
// store refuses to open rather than trust a lower mark.
func TestStrictChainFile(t *testing.T) {
	const pkh = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
	hash := encodePayloadHash([32]byte{1})
	for name, body := range map[string]string{
		"case duplicate":    `{"` + pkh + `":{"block":{"level":9000,"Level":1,"round":0,"hash":"` + hash + `"}}}`,
		"unknown field":     `{"` + pkh + `":{"block":{"level":9000,"round":0,"hash":"` + hash + `","note":"x"}}}`,
		"garbage signature": `{"` + pkh + `":{"block":{"level":9000,"round":0,"hash":"` + hash + `","signature":"not-a-signature"}}}`,
		"null":              `null`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			wdir := filepath.Join(dir, DirName)
			require.NoError(t, os.MkdirAll(wdir, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(wdir, "NetXdQprcVkpaWU.json"), []byte(body), 0o600))
			_, err := Open(Config{BaseDir: dir})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "is corrupt")
			assert.Contains(t, err.Error(), "NetXdQprcVkpaWU.json")
		})
	}
}

// FuzzLoad: a chain file is either refused or loads into marks that write
// back and load again to the same marks; it never panics.
func FuzzLoad(f *testing.F) {
	const pkh = "tz1KqTpEZ7Yob7QbPE4Hy4Wo8fHG8LhKxZSx"
	hash := encodePayloadHash([32]byte{1})
	f.Add([]byte(`{"` + pkh + `":{"block":{"level":12,"round":1,"hash":"` + hash + `"}}}`))
	f.Add([]byte(`{"` + pkh + `":{"attestation":{"level":9000,"Level":1,"round":0}}}`))
	f.Add([]byte(`{"` + pkh + `":{"endorsement":{"level":1,"round":0}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "NetXdQprcVkpaWU.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		marks, err := load(path)
		if err != nil {
			return
		}
		out, err := encode(marks)
		if err != nil {
			t.Fatalf("encode of loaded marks: %v", err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := load(path)
		if err != nil {
			t.Fatalf("reload of written marks: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(marks, again) {
			t.Fatalf("round trip changed the marks:\n%v\n%v", marks, again)
		}
	})
}

type ioLog struct{ ops []string }

func (l *ioLog) ObserveWatermarkIO(e ports.WatermarkIOEvent) {
	op := e.Backend + ":" + e.Operation
	if e.Err != nil {
		op += ":" + e.ErrorType
	}
	l.ops = append(l.ops, op)
}

// TestIOObserved: as Signatory's file backend, the store reports one read
// when it opens (the load of every chain file) and one write per written
// file, migration included.
func TestIOObserved(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	log := &ioLog{}
	open := func() *Store {
		st, err := Driver(ctx, nil, wm.Env{BaseDir: base, IO: log})
		require.NoError(t, err)
		s := st.(*Store)
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	assert.Equal(t, []string{"file:read"}, log.ops, "one read at open, even with nothing to load")
	k := watermarktest.Key(chainID, watermark.KindBlock)
	_, err := s.Commit(ctx, k, watermarktest.M(1, 0, 1, "s"))
	require.NoError(t, err)
	_, err = s.Commit(ctx, k, watermarktest.M(1, 0, 1, "again")) // replayed: nothing written
	require.NoError(t, err)
	assert.Equal(t, []string{"file:read", "file:write"}, log.ops)
	require.NoError(t, s.Close())

	// An older directory of Signatory's is migrated: one write per chain
	// file, then the read.
	base = t.TempDir()
	v1 := filepath.Join(base, V1DirName)
	require.NoError(t, os.MkdirAll(v1, 0o700))
	for _, c := range []string{watermarktest.Mainnet, watermarktest.Ghostnet} {
		require.NoError(t, os.WriteFile(filepath.Join(v1, c+".json"),
			[]byte(fmt.Sprintf(`{%q: {"level": 5, "round": 0, "order": 2, "hash": null}}`, watermarktest.PKH())), 0o600))
	}
	log.ops = nil
	open()
	assert.Equal(t, []string{"file:write", "file:write", "file:read"}, log.ops)
}
