package softvault

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// fileStore is the file vault's key list: the keys of its key file as last
// read. Refresh (a reload) reads the file again: keys added to it are
// held from then on, keys removed from it are no longer listed (the
// signer stops serving them; their private keys stay in this process's
// memory until it exits, so that a request already running with one still
// completes).
type fileStore struct {
	store
	cfg FileConfig
	log *slog.Logger

	mu     sync.Mutex // serializes reads of the file
	listed []tezos.PublicKeyHash
}

// read parses the whole key file, then adds its keys to the enclave and
// lists exactly them. A file that cannot be read or parsed, or any entry
// that does not open, changes nothing. Errors name the entry, never its
// value.
func (s *fileStore) read(log *slog.Logger) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := os.ReadFile(s.cfg.File)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "file vault: reading the key file: %v", err)
	}
	defer clear(raw)
	var entries []fileEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return domain.Errorf(domain.KindInvalid, "file vault: the key file is not a JSON list of {name, value}: %v", redactJSONError(err))
	}
	if fi, err := os.Stat(s.cfg.File); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the key file is readable by other users; make it mode 0600", "path", s.cfg.File, "mode", fi.Mode().Perm().String())
	}
	pass := passphrase(s.cfg.Passphrase)
	defer clear(pass)
	staged := newEnclave("file", false) // parsed and checked before anything is held
	defer staged.Close()
	for i, ent := range entries {
		label := fmt.Sprintf("entry %d", i+1)
		if ent.Name != "" {
			label += fmt.Sprintf(" (%q)", ent.Name)
		}
		if err := addSecret(staged, ent.Value, pass, label); err != nil {
			return fmt.Errorf("file vault: %w", err)
		}
	}
	staged.mu.Lock()
	listed := make([]tezos.PublicKeyHash, 0, len(staged.order))
	var fresh []tezos.PrivateKey
	for _, pkh := range staged.order {
		listed = append(listed, pkh)
		if _, err := s.e.get(pkh); err != nil {
			k := staged.keys[pkh]
			fresh = append(fresh, tezos.PrivateKey{Type: k.sk.Type, Bytes: append([]byte(nil), k.sk.Bytes...)})
		}
	}
	staged.mu.Unlock()
	for _, sk := range fresh {
		if _, _, err := s.e.add(sk); err != nil {
			return fmt.Errorf("file vault: %w", err)
		}
	}
	s.listed = listed
	return nil
}

// Refresh implements ports.KeyStoreRefresher: the key file is read again.
func (s *fileStore) Refresh(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.read(s.log)
}

// List returns the keys of the key file as last read.
func (s *fileStore) List(ctx context.Context) ([]ports.StoredKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ports.StoredKey, 0, len(s.listed))
	for _, pkh := range s.listed {
		a := pkh.String()
		out = append(out, ports.StoredKey{PKH: a, Blob: []byte(a)})
	}
	return out, nil
}

var _ ports.KeyStoreRefresher = (*fileStore)(nil)
