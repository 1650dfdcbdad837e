package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/storage/storagetest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

func newStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := New(path)
	if err != nil {
		t.Fatalf("New(%s): %v", path, err)
	}
	return s
}

func TestContract(t *testing.T) {
	// Every Put rewrites and fsyncs the whole file (about 8 ms here), so the
	// bulk case uses fewer keys than the paginated drivers need.
	storagetest.RunWithOptions(t, func(t *testing.T) storagetest.Factory {
		path := filepath.Join(t.TempDir(), "keys", "confidential_space_keys.json")
		return func(t *testing.T) ports.KeyStore { return newStore(t, path) }
	}, storagetest.Options{ManyKeys: 300})
}

func TestOpenConfig(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	t.Setenv("SIGIL_TEST_KEYDIR", base)

	decodeString := func(v string) func(any) error {
		return func(out any) error {
			p, ok := out.(*string)
			if !ok {
				return fmt.Errorf("decode into %T", out)
			}
			*p = v
			return nil
		}
	}
	cases := []struct {
		name    string
		decode  func(any) error
		baseDir string
		want    string
		wantErr string
	}{
		{"absent section uses base dir", nil, base, filepath.Join(base, DefaultFileName), ""},
		// Present but empty (an empty variable, null): refused, never
		// silently the default file.
		{"empty string refused", decodeString(""), base, "", "present but empty"},
		{"blank string refused", decodeString("  "), base, "", "present but empty"},
		{"explicit path", decodeString(filepath.Join(base, "k.json")), base, filepath.Join(base, "k.json"), ""},
		// The configuration expands variables once, when it is parsed; a $
		// left in the path is a literal (expanding again would re-read a
		// variable's value as a reference).
		{"dollar is literal", decodeString(filepath.Join(base, "$x.json")), base, filepath.Join(base, "$x.json"), ""},
		{"no path and no base dir", nil, "", "", "no path configured"},
		{"config is not a string", func(any) error { return errors.New("cannot unmarshal !!map into string") }, base, "", "single path string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, err := Open(ctx, c.decode, storage.Env{BaseDir: c.baseDir})
			if c.wantErr != "" {
				if err == nil {
					t.Fatalf("Open succeeded, want error containing %q", c.wantErr)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %q does not mention %q", err, c.wantErr)
				}
				if domain.KindOf(err) != domain.KindInvalid {
					t.Fatalf("error kind %v, want invalid", domain.KindOf(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := ks.(*Store).Path(); got != c.want {
				t.Fatalf("path %q, want %q", got, c.want)
			}
		})
	}
}

func TestNewRejectsDirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("New(dir) error = %v, want 'is a directory'", err)
	}
	if _, err := New(" "); err == nil {
		t.Fatal("New with a blank path succeeded")
	}
}

func TestFileModeAndDirectory(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "keys.json")
	s := newStore(t, path)
	if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, filepath.Join(root, "a", "b"), 0o700|os.ModeDir)
	assertMode(t, filepath.Join(root, "a"), 0o700|os.ModeDir)

	// An existing, too permissive file gets 0600 when rewritten.
	loose := filepath.Join(root, "loose.json")
	if err := os.WriteFile(loose, []byte("[]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := newStore(t, loose).Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	assertMode(t, loose, 0o600)
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Fatalf("%s has mode %v, want %v", path, got, want)
	}
}

// dirEntries lists the directory except the key file and its lock file.
func strayFiles(t *testing.T, dir, keyFile string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); n != keyFile && n != keyFile+".lock" {
			out = append(out, n)
		}
	}
	return out
}

func TestNoTempFilesLeft(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, filepath.Join(dir, "keys.json"))
	for i := 0; i < 20; i++ {
		if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.Ed25519, i), Blob: storagetest.Blob(i, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if stray := strayFiles(t, dir, "keys.json"); len(stray) != 0 {
		t.Fatalf("files left behind: %v", stray)
	}
}

func TestSignatoryFixture(t *testing.T) {
	ctx := context.Background()
	fixture, err := os.ReadFile("testdata/signatory_keys.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "confidential_space_keys.json")
	if err := os.WriteFile(path, fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, path)
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List on a Signatory file: %v", err)
	}
	want := []ports.StoredKey{
		{PKH: "tz1YZYNSvAVzU8myseb22x1GbbWZYqupanR3", Blob: []byte("sealed-ed25519-\x00\x01\xff")},
		{PKH: "tz4J5SLTw5jAQF3gVkCrTYLZxttdtivQHC3e", Blob: []byte("sealed-bls-new")}, // duplicate: last wins
		{PKH: "tz2VHmC4qdvPUQQfmVJpBvjNk5XB7ATxwFr6", Blob: []byte("sealed-secp256k1")},
		{PKH: "tz3jfSTCfAYX7v58jFKTt8qnvzaQURvb2vAf", Blob: []byte("sealed-p256")},
	}
	assertKeys(t, keys, want)

	// A rewrite drops the duplicate and stays readable the way Signatory
	// reads it (encoding/json into []byte fields).
	extra := ports.StoredKey{PKH: storagetest.PKH(tezos.Ed25519, 77), Blob: []byte{0, 1, 2, 250}}
	if err := s.Put(ctx, extra); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var signatoryView []struct {
		PublicKeyHash       string `json:"public_key_hash"`
		EncryptedPrivateKey []byte `json:"encrypted_private_key"`
	}
	if err := json.Unmarshal(data, &signatoryView); err != nil {
		t.Fatalf("rewritten file is not Signatory's format: %v", err)
	}
	var got []ports.StoredKey
	for _, e := range signatoryView {
		got = append(got, ports.StoredKey{PKH: e.PublicKeyHash, Blob: e.EncryptedPrivateKey})
	}
	assertKeys(t, got, append(want, extra))
	if !bytes.HasPrefix(data, []byte("[\n    {\n        \"public_key_hash\": ")) {
		t.Fatalf("rewritten file does not use Signatory's layout:\n%s", data[:min(len(data), 80)])
	}
}

func assertKeys(t *testing.T, got, want []ports.StoredKey) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d: %v", len(got), len(want), pkhs(got))
	}
	for i := range want {
		if got[i].PKH != want[i].PKH || !bytes.Equal(got[i].Blob, want[i].Blob) {
			t.Fatalf("key %d = %s (%q), want %s (%q)", i, got[i].PKH, got[i].Blob, want[i].PKH, want[i].Blob)
		}
	}
}

func pkhs(keys []ports.StoredKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.PKH)
	}
	return out
}

// An empty store is a missing file or []. An empty file or a JSON null is
// corruption: read as "no keys" it would make every key 404 while the
// daemon reports itself healthy.
func TestEmptyAndNullFiles(t *testing.T) {
	for _, content := range []string{"", "  \n", "null", " null\n"} {
		path := filepath.Join(t.TempDir(), "k.json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := newStore(t, path).List(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is corrupt") || !strings.Contains(err.Error(), path) {
			t.Fatalf("content %q: keys=%d err=%v, want a corruption error naming the file", content, len(keys), err)
		}
	}
	path := filepath.Join(t.TempDir(), "k.json")
	if err := os.WriteFile(path, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := newStore(t, path).List(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("[]: keys=%d err=%v, want an empty store", len(keys), err)
	}
	keys, err = newStore(t, filepath.Join(t.TempDir(), "missing.json")).List(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("missing file: keys=%d err=%v, want an empty store", len(keys), err)
	}
}

func TestCorruptFile(t *testing.T) {
	ctx := context.Background()
	valid := storagetest.PKH(tezos.Ed25519, 1)
	cases := []struct {
		name, content, want string
	}{
		{"truncated", "[\n  {\"public_key_hash\": \"" + valid + "\",\n", "invalid JSON at line 3"},
		{"garbage", "\x00\x01binary", "invalid JSON at line 1"},
		{"object", `{"public_key_hash": "` + valid + `"}`, "expected a JSON array"},
		{"scalar entry", `[1]`, "entry at index 0: expected an object"},
		{"bad address", `[{"public_key_hash": "` + valid + `", "encrypted_private_key": "AA=="}, {"public_key_hash": "tz1nope", "encrypted_private_key": "AA=="}]`, "entry at index 1: public_key_hash"},
		{"contract address", `[{"public_key_hash": "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXitn", "encrypted_private_key": "AA=="}]`, "entry at index 0: public_key_hash"},
		{"missing address", `[{"encrypted_private_key": "AA=="}]`, "entry at index 0: missing public_key_hash"},
		{"bad base64", `[{"public_key_hash": "` + valid + `", "encrypted_private_key": "not*base64"}]`, "entry at index 0 (" + valid + "): encrypted_private_key is not valid standard base64"},
		{"url base64", `[{"public_key_hash": "` + valid + `", "encrypted_private_key": "__8-"}]`, "entry at index 0 (" + valid + "): encrypted_private_key is not valid standard base64"},
		{"missing blob", `[{"public_key_hash": "` + valid + `"}]`, "entry at index 0 (" + valid + "): missing encrypted_private_key"},
		{"empty blob", `[{"public_key_hash": "` + valid + `", "encrypted_private_key": ""}]`, "encrypted_private_key is empty"},
		{"unknown field", `[{"public_key_hash": "` + valid + `", "encrypted_private_key": "AA==", "note": 1}]`, `[0]: unknown field "note"`},
		{"case-variant field", `[{"Public_Key_Hash": "` + valid + `", "encrypted_private_key": "AA=="}]`, `unknown field "Public_Key_Hash"`},
		{"duplicate field", `[{"public_key_hash": "` + valid + `", "encrypted_private_key": "AA==", "encrypted_private_key": "AQ=="}]`, `key "encrypted_private_key" appears twice`},
		{"wrong type", `[{"public_key_hash": 12, "encrypted_private_key": "AA=="}]`, "entry at index 0: public_key_hash and encrypted_private_key must be strings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s := newStore(t, path)
			_, err := s.List(ctx)
			if err == nil {
				t.Fatal("List of a corrupt file succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should name the file and contain %q", err, c.want)
			}
			err = s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 5), Blob: []byte("new")})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Put over a corrupt file: error %v, want one containing %q", err, c.want)
			}
			after, _ := os.ReadFile(path)
			if string(after) != c.content {
				t.Fatal("a corrupt file was overwritten")
			}
		})
	}
}

func TestErrorsDoNotLeakBlobs(t *testing.T) {
	secret := "c2VjcmV0LXNlYWxlZC1ibG9i" // base64 of a would-be blob
	path := filepath.Join(t.TempDir(), "keys.json")
	content := `[{"public_key_hash": "tz1bad", "encrypted_private_key": "` + secret + `"}]`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newStore(t, path).List(context.Background())
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error %v must exist and must not contain the blob", err)
	}
}

// TestCrashSafety injects a failure between writing the temp file and
// renaming it: the key file must hold the old content, untouched, and no
// temp file may be left behind.
func TestCrashSafety(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	s := newStore(t, path)
	first := ports.StoredKey{PKH: storagetest.PKH(tezos.Ed25519, 1), Blob: []byte("first")}
	if err := s.Put(ctx, first); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var sawTemp []byte
	beforeRename = func(tmp string) error {
		// The temp file is complete, synced and private before the rename.
		sawTemp, _ = os.ReadFile(tmp)
		fi, err := os.Stat(tmp)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("temp file %s: mode %v, err %v; want 0600", tmp, fi.Mode(), err)
		}
		return errors.New("injected crash")
	}
	t.Cleanup(func() { beforeRename = nil })

	err = s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 2), Blob: []byte("second")})
	if err == nil || !strings.Contains(err.Error(), "injected crash") {
		t.Fatalf("Put error = %v, want the injected failure", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("failed write changed the key file")
	}
	var parsed []json.RawMessage
	if err := json.Unmarshal(sawTemp, &parsed); err != nil || len(parsed) != 2 {
		t.Fatalf("temp file was not the complete new content (%d entries, %v)", len(parsed), err)
	}
	if stray := strayFiles(t, dir, "keys.json"); len(stray) != 0 {
		t.Fatalf("failed write left files behind: %v", stray)
	}
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertKeys(t, keys, []ports.StoredKey{first})

	beforeRename = nil
	if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 2), Blob: []byte("second")}); err != nil {
		t.Fatalf("Put after recovery: %v", err)
	}
}

// TestReadersNeverSeePartialFile reads continuously while a writer grows the
// file: every read must parse.
func TestReadersNeverSeePartialFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	w := newStore(t, path)
	r := newStore(t, path)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var readErr error
	reads := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := r.List(ctx); err != nil {
				readErr = err
				return
			}
			reads++
		}
	}()
	for i := 0; i < 100; i++ {
		if err := w.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.P256, i), Blob: storagetest.Blob(i, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("a concurrent reader saw a broken file after %d reads: %v", reads, readErr)
	}
}

func TestSymlinkIsFollowed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "real.json")
	link := filepath.Join(dir, "link.json")
	if err := os.WriteFile(target, []byte("[]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := newStore(t, link).Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced (%v, %v)", fi.Mode(), err)
	}
	keys, err := newStore(t, target).List(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("target holds %d keys (%v), want 1", len(keys), err)
	}
}

func TestLockWaitHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	s := newStore(t, path)
	// Another "process" holds the file lock.
	other := newStore(t, path)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := other.lockFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("x")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put while locked: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Put waited %v past its deadline", d)
	}
}

const (
	helperEnvPath   = "SIGIL_FILESTORE_HELPER_PATH"
	helperEnvOffset = "SIGIL_FILESTORE_HELPER_OFFSET"
	helperEnvStart  = "SIGIL_FILESTORE_HELPER_START"
	crossN          = 40
)

// TestHelperProcessPut is not a test: TestCrossProcessWriters runs the test
// binary again with it selected to get a second writer process.
func TestHelperProcessPut(t *testing.T) {
	path := os.Getenv(helperEnvPath)
	if path == "" {
		return // not running as a helper
	}
	off, err := strconv.Atoi(os.Getenv(helperEnvOffset))
	if err != nil {
		t.Fatal(err)
	}
	start, err := strconv.ParseInt(os.Getenv(helperEnvStart), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, path)
	time.Sleep(time.Until(time.Unix(0, start)))
	for i := off; i < off+crossN; i++ {
		if err := s.Put(context.Background(), ports.StoredKey{PKH: storagetest.PKH(tezos.Secp256k1, i), Blob: storagetest.Blob(i, 0)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCrossProcessWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	const children = 2
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	// Every writer starts at the same moment so that they really overlap.
	start := time.Now().Add(700 * time.Millisecond)
	for c := 1; c <= children; c++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessPut$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnvPath+"="+path, fmt.Sprintf("%s=%d", helperEnvOffset, c*crossN),
			fmt.Sprintf("%s=%d", helperEnvStart, start.UnixNano()))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	s := newStore(t, path)
	time.Sleep(time.Until(start))
	for i := 0; i < crossN; i++ {
		if err := s.Put(context.Background(), ports.StoredKey{PKH: storagetest.PKH(tezos.Secp256k1, i), Blob: storagetest.Blob(i, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process %d failed: %v\n%s", i+1, err, outs[i])
		}
	}
	keys, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != (children+1)*crossN {
		t.Fatalf("after %d writers × %d puts the file holds %d keys", children+1, crossN, len(keys))
	}
	got := map[string][]byte{}
	for _, k := range keys {
		got[k.PKH] = k.Blob
	}
	for i := 0; i < (children+1)*crossN; i++ {
		if !bytes.Equal(got[storagetest.PKH(tezos.Secp256k1, i)], storagetest.Blob(i, 0)) {
			t.Fatalf("key #%d lost", i)
		}
	}
}
