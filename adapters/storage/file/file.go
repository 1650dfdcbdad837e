// Package file is the "file" key storage driver: sealed key blobs kept in one
// local JSON file in Signatory's format, an array of
// {"public_key_hash": "tz…", "encrypted_private_key": "<standard base64>"}.
// Writes are atomic (temp file in the same directory, fsync, rename, fsync of
// the directory), the file is kept at mode 0600, and a read-modify-write is
// serialized both inside the process and across processes (an advisory flock
// on a sibling ".lock" file), so the CLI can add keys while a daemon runs.
// The store keeps no cache: every List reads the file.
package file

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
	"github.com/sigil-signer/sigil/adapters/internal/strictjson"
	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultFileName is the file name used under the base directory when no
// path is configured.
const DefaultFileName = "confidential_space_keys.json"

const (
	fileMode = 0o600
	dirMode  = 0o700
)

// beforeRename, when set (by tests), runs after the temp file is written and
// synced and before it replaces the key file; an error aborts the write.
var beforeRename func(tmpPath string) error

// Open is the driver's storage.Opener. The config section is one string: the
// file path (the configuration has already expanded its ${VAR} references,
// ${BASE_DIR} included). With no config, or an empty string, the path is
// <base dir>/confidential_space_keys.json.
func Open(_ context.Context, decode func(any) error, env storage.Env) (ports.KeyStore, error) {
	path, err := configPath(decode, env)
	if err != nil {
		return nil, err
	}
	s, err := New(path)
	if err != nil {
		return nil, err
	}
	s.log = storage.LoggerOf(env)
	return s, nil
}

// Check is the driver's storage.Checker: the section must be one path
// string (or absent, with a base directory to put the default file in).
func Check(decode func(any) error, env storage.Env) error {
	_, err := configPath(decode, env)
	return err
}

func configPath(decode func(any) error, env storage.Env) (string, error) {
	var raw string
	if decode != nil {
		if err := decode(&raw); err != nil {
			return "", domain.Errorf(domain.KindInvalid, "file key storage: config must be a single path string: %v", err)
		}
		// A section that is present but resolves to nothing (an empty
		// variable, null, "") would silently move the key file to the
		// default; leave the section out for the default.
		if strings.TrimSpace(raw) == "" {
			return "", domain.Errorf(domain.KindInvalid, "file key storage: config: present but empty (after expanding variables); give the key file's path, or remove config for %s under the base directory", DefaultFileName)
		}
	}
	return ResolvePath(raw, env.BaseDir)
}

var (
	_ storage.Opener  = Open
	_ storage.Checker = Check
)

// ResolvePath turns the configured path into the file path: an empty path
// means baseDir/confidential_space_keys.json.
func ResolvePath(raw, baseDir string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		if baseDir == "" {
			return "", domain.Errorf(domain.KindInvalid, "file key storage: no path configured and no base directory to put %s in", DefaultFileName)
		}
		return filepath.Join(baseDir, DefaultFileName), nil
	}
	return raw, nil
}

// Store is a key store backed by one JSON file. It is safe for concurrent
// use, also by several processes on the same file.
type Store struct {
	path     string
	lockPath string
	sem      chan struct{} // in-process writer lock, selectable with ctx
	log      *slog.Logger
}

// New returns a store on the file at path. The file need not exist (a missing
// file is an empty store); it and its parent directory (mode 0700) are
// created by the first Put.
func New(path string) (*Store, error) {
	if strings.TrimSpace(path) == "" {
		return nil, domain.Errorf(domain.KindInvalid, "file key storage: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("file key storage: resolve path %q: %w", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, domain.Errorf(domain.KindInvalid, "file key storage: %s is a directory, not a key file", abs)
	}
	return &Store{
		path:     abs,
		lockPath: abs + ".lock",
		sem:      make(chan struct{}, 1),
		log:      slog.New(slog.DiscardHandler),
	}, nil
}

// Path returns the absolute path of the key file.
func (s *Store) Path() string { return s.path }

// List returns every stored key, in file order, with duplicate entries of
// one address collapsed (the last one wins).
func (s *Store) List(ctx context.Context) ([]ports.StoredKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Writers replace the file by rename, so an unlocked read sees either
	// the old or the new file, never a mix.
	return s.read()
}

// Put stores k, replacing the entry of the same address if there is one.
// The file is rewritten atomically and synced before Put returns.
func (s *Store) Put(ctx context.Context, k ports.StoredKey) error {
	pkh, err := tezos.ParsePublicKeyHash(k.PKH)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "file key storage: put: %v", err)
	}
	if len(k.Blob) == 0 {
		return domain.Errorf(domain.KindInvalid, "file key storage: put %s: empty encrypted key", k.PKH)
	}
	addr := pkh.String()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file key storage: put %s: %w", addr, err)
	}

	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("file key storage: put %s: %w", addr, ctx.Err())
	}
	defer func() { <-s.sem }()

	if err := os.MkdirAll(filepath.Dir(s.path), dirMode); err != nil {
		return fmt.Errorf("file key storage: create directory for %s: %w", s.path, err)
	}
	unlock, err := s.lockFile(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	keys, err := s.read()
	if err != nil {
		return err // never overwrite a file we cannot understand
	}
	blob := bytes.Clone(k.Blob)
	replaced := false
	for i := range keys {
		if keys[i].PKH == addr {
			keys[i].Blob = blob
			replaced = true
		}
	}
	if !replaced {
		keys = append(keys, ports.StoredKey{PKH: addr, Blob: blob})
	}
	data, err := encode(keys)
	if err != nil {
		return fmt.Errorf("file key storage: encode %s: %w", s.path, err)
	}
	if err := atomicfile.Write(s.path, data, fileMode, beforeRename); err != nil {
		return fmt.Errorf("file key storage: write %s: %w", s.path, err)
	}
	s.log.Debug("stored sealed key", "pkh", addr, "file", s.path, "replaced", replaced)
	return nil
}

// lockFile takes the cross-process advisory lock, polling so that ctx can
// cancel the wait.
func (s *Store) lockFile(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(s.lockPath, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("file key storage: open lock file %s: %w", s.lockPath, err)
	}
	delay := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("file key storage: lock %s: %w", s.lockPath, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("file key storage: waiting for lock %s: %w", s.lockPath, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// entry is one element of the file, in Signatory's field names.
type entry struct {
	PKH *string `json:"public_key_hash"`
	Key *string `json:"encrypted_private_key"`
}

func (s *Store) read() ([]ports.StoredKey, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file key storage: read %s: %w", s.path, err)
	}
	keys, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("file key storage: key file %s is corrupt: %w", s.path, err)
	}
	return keys, nil
}

// Decode parses the file format strictly: a JSON array of objects with
// exactly Signatory's two fields. An empty document or a JSON null is
// corruption, not an empty store (a daemon that read it as "no keys" would
// answer 404 for every key while reporting itself healthy). Entries with the
// same address are collapsed into the position of the first one, holding
// the blob of the last one (older Signatory versions appended duplicates).
func Decode(data []byte) ([]ports.StoredKey, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] != '[' && trimmed[0] != 'n' {
		if !json.Valid(trimmed) {
			return nil, syntaxError(data)
		}
		return nil, errors.New("expected a JSON array of keys at the top level")
	}
	if err := strictjson.Check(data, []entry{}); err != nil {
		return nil, fmt.Errorf("%w (want a JSON array of {\"public_key_hash\", \"encrypted_private_key\"}; an empty key file is [])", err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, syntaxError(data)
	}
	out := make([]ports.StoredKey, 0, len(raws))
	index := make(map[string]int, len(raws))
	for i, raw := range raws {
		r := bytes.TrimSpace(raw)
		if len(r) == 0 || r[0] != '{' {
			return nil, fmt.Errorf("entry at index %d: expected an object with public_key_hash and encrypted_private_key", i)
		}
		var e entry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("entry at index %d: public_key_hash and encrypted_private_key must be strings", i)
		}
		if e.PKH == nil {
			return nil, fmt.Errorf("entry at index %d: missing public_key_hash", i)
		}
		pkh, err := tezos.ParsePublicKeyHash(*e.PKH)
		if err != nil {
			return nil, fmt.Errorf("entry at index %d: public_key_hash: %w", i, err)
		}
		addr := pkh.String()
		if e.Key == nil {
			return nil, fmt.Errorf("entry at index %d (%s): missing encrypted_private_key", i, addr)
		}
		blob, err := base64.StdEncoding.DecodeString(*e.Key)
		if err != nil {
			return nil, fmt.Errorf("entry at index %d (%s): encrypted_private_key is not valid standard base64: %v", i, addr, err)
		}
		if len(blob) == 0 {
			return nil, fmt.Errorf("entry at index %d (%s): encrypted_private_key is empty", i, addr)
		}
		if j, dup := index[addr]; dup {
			out[j].Blob = blob
			continue
		}
		index[addr] = len(out)
		out = append(out, ports.StoredKey{PKH: addr, Blob: blob})
	}
	return out, nil
}

// syntaxError describes where data stops being valid JSON.
func syntaxError(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return strictjson.SyntaxError(data, err)
	}
	return errors.New("invalid JSON")
}

// encode writes keys in Signatory's layout (four-space indent).
func encode(keys []ports.StoredKey) ([]byte, error) {
	type outEntry struct {
		PKH string `json:"public_key_hash"`
		Key []byte `json:"encrypted_private_key"`
	}
	out := make([]outEntry, len(keys))
	for i, k := range keys {
		out[i] = outEntry{PKH: k.PKH, Key: k.Blob}
	}
	data, err := json.MarshalIndent(out, "", "    ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
