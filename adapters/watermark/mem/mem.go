// Package mem is the in-memory watermark store (driver "mem"): marks live in
// the process only and are lost on restart, so it is meant for tests and
// development. Each key has its own lock; different keys never wait on each
// other.
package mem

import (
	"context"
	"sync"

	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// Config configures the mem driver. It has no settings.
type Config struct{}

// Store is an in-memory ports.WatermarkStore.
type Store struct {
	entries sync.Map // watermark.Key → *entry
}

type entry struct {
	mu   sync.Mutex
	mark *watermark.Mark // nil until the first commit
}

var _ ports.WatermarkStore = (*Store)(nil)

// New returns an empty store.
func New(Config) *Store { return &Store{} }

func (s *Store) entry(k watermark.Key) *entry {
	if e, ok := s.entries.Load(k); ok {
		return e.(*entry)
	}
	e, _ := s.entries.LoadOrStore(k, new(entry))
	return e.(*entry)
}

// Check returns the recorded mark for k. The answer is authoritative.
func (s *Store) Check(_ context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	if err := k.Validate(); err != nil {
		return watermark.Mark{}, false, err
	}
	e, ok := s.entries.Load(k)
	if !ok {
		return watermark.Mark{}, false, nil
	}
	ent := e.(*entry)
	ent.mu.Lock()
	defer ent.mu.Unlock()
	if ent.mark == nil {
		return watermark.Mark{}, false, nil
	}
	return *ent.mark, true, nil
}

// Commit records m for k as ports.WatermarkStore specifies.
func (s *Store) Commit(_ context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := watermark.ValidateCommit(k, m); err != nil {
		return watermark.Mark{}, err
	}
	e := s.entry(k)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch d, err := watermark.Decide(k, watermark.Enforced(k.Kind, e.mark), m); d {
	case watermark.Accept:
		e.mark = &m
		return m, nil
	case watermark.Replay:
		return *e.mark, nil
	case watermark.Resign:
		// The very message of a mark imported without its signature:
		// signed again, nothing to record.
		return m, nil
	default:
		return watermark.Mark{}, err
	}
}

// Export returns every recorded mark.
func (s *Store) Export(context.Context) ([]watermark.Record, error) {
	var out []watermark.Record
	s.entries.Range(func(k, v any) bool {
		e := v.(*entry)
		e.mu.Lock()
		if e.mark != nil {
			out = append(out, watermark.Record{Key: k.(watermark.Key), Mark: *e.mark})
		}
		e.mu.Unlock()
		return true
	})
	return out, nil
}

// Import raises marks to recs. All records are validated before any is
// applied.
func (s *Store) Import(_ context.Context, recs []watermark.Record) error {
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for _, r := range recs {
		e := s.entry(r.Key)
		e.mu.Lock()
		if m, changed := watermark.Raise(e.mark, r.Mark); changed {
			e.mark = &m
		}
		e.mu.Unlock()
	}
	return nil
}

// Driver is the `mem` backend's watermark.Opener (for tests: marks are lost
// when the process ends).
func Driver(_ context.Context, decode func(any) error, _ wm.Env) (ports.WatermarkStore, error) {
	cfg, err := driverConfig(decode)
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

// Check is the `mem` backend's watermark.Checker.
func Check(decode func(any) error, _ wm.Env) error {
	_, err := driverConfig(decode)
	return err
}

func driverConfig(decode func(any) error) (Config, error) {
	var cfg Config
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return Config{}, domain.Errorf(domain.KindInvalid, "mem watermark: invalid config: %v", err)
		}
	}
	return cfg, nil
}

// Location names where the marks are: this process's memory, lost at
// every restart.
func (s *Store) Location() string { return "this process's memory (lost at every restart)" }
