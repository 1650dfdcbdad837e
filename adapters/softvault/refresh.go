package softvault

import (
	"context"
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
	path := s.cfg.File
	raw, err := os.ReadFile(path)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "file vault: reading the key file: %v", err)
	}
	defer clear(raw)
	entries, err := decodeKeyFile(raw)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "file vault: the key file %s is corrupt: %v", path, err)
	}
	if len(entries) == 0 {
		log.Warn("the file vault's key file holds no key ([]): this vault signs nothing, and /healthz is not ready while the tezos section names a key no vault holds", "path", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the key file is readable by other users; make it mode 0600", "path", path, "mode", fi.Mode().Perm().String())
	}
	pass := passphrase(s.cfg.Passphrase)
	defer clear(pass)
	staged := newEnclave("file", false) // parsed and checked before anything is held
	defer staged.Close()
	seen := map[string]string{}
	for i, ent := range entries {
		label := fmt.Sprintf("entry %d", i+1)
		if ent.Name != "" {
			label += fmt.Sprintf(" (%q)", domain.Echo(ent.Name))
		}
		if err := addSecret(staged, ent.Value, pass, label, seen); err != nil {
			return fmt.Errorf("file vault: %s: %w", path, err)
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
