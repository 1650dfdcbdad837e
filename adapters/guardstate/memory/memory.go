// Package memory is an in-memory ports.GuardState for the enclave's guard:
// marks live in this process only and are lost at every restart, so it is
// for tests and development, never for a guard that must survive a
// restart. Check is authoritative; Commit decides with domain/watermark
// under a per-key lock.
package memory

import (
	"context"
	"sync"

	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// State is an in-memory ports.GuardState. The zero value is empty and
// ready; it is safe for concurrent use.
type State struct {
	mu    sync.Mutex
	marks map[watermark.Key]watermark.Mark
}

var _ ports.GuardState = (*State)(nil)

// New returns an empty state.
func New() *State { return &State{} }

// Check returns the recorded mark for k.
func (s *State) Check(_ context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	if err := k.Validate(); err != nil {
		return watermark.Mark{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.marks[k]
	return m, ok, nil
}

// Commit records m for k as ports.GuardState specifies.
func (s *State) Commit(_ context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := watermark.ValidateCommit(k, m); err != nil {
		return watermark.Mark{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec *watermark.Mark
	if cur, ok := s.marks[k]; ok {
		rec = &cur
	}
	switch d, err := watermark.Decide(k, watermark.Enforced(k.Kind, rec), m); d {
	case watermark.Accept:
		if s.marks == nil {
			s.marks = map[watermark.Key]watermark.Mark{}
		}
		s.marks[k] = m
		return m, nil
	case watermark.Replay:
		return *rec, nil
	case watermark.Resign:
		return m, nil
	default:
		return watermark.Mark{}, err
	}
}

// Len returns how many marks are recorded (tests).
func (s *State) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.marks)
}
