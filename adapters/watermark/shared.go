package watermark

import (
	"context"
	"sync"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
)

// Shared is what one process keeps, key by key, about a watermark store it
// shares with other daemons through conditional writes (Firestore,
// DynamoDB): a lock allowing one commit in flight per key, the highest mark
// it has seen recorded (which answers Check; never authoritative, since
// another daemon may have recorded a higher one, and safe because marks only
// rise), and the backend's record of each key as last read or written (S:
// what a conditional write compares), which it decides on. It is safe for
// concurrent use; create it with NewShared.
type Shared[S any] struct {
	what string // names the store in errors, e.g. "firestore watermark"

	mu     sync.Mutex
	seen   map[watermark.Key]watermark.Mark
	states map[watermark.Key]S
	locks  map[watermark.Key]chan struct{}
}

// NewShared returns an empty Shared whose errors start with what.
func NewShared[S any](what string) *Shared[S] {
	return &Shared[S]{
		what:   what,
		seen:   make(map[watermark.Key]watermark.Mark),
		states: make(map[watermark.Key]S),
		locks:  make(map[watermark.Key]chan struct{}),
	}
}

// Lock waits (bounded by ctx) until no other commit of this process is in
// flight on k, and returns the function that releases k. Commits of one
// process on one key would only defeat each other's conditions; serializing
// them locally leaves contention to separate daemons, which the conditions
// arbitrate. Different keys never wait on each other. When ctx ends first,
// the error is of kind Unavailable.
func (s *Shared[S]) Lock(ctx context.Context, k watermark.Key) (func(), error) {
	s.mu.Lock()
	l, ok := s.locks[k]
	if !ok {
		l = make(chan struct{}, 1)
		s.locks[k] = l
	}
	s.mu.Unlock()
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, domain.Errorf(domain.KindUnavailable, "%s: waiting for %s: %w", s.what, k, ctx.Err())
	}
}

// Remember records that m is recorded for k, keeping the highest mark seen
// (and, at one position, the one with a signature).
func (s *Shared[S]) Remember(k watermark.Key, m watermark.Mark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.seen[k]
	if !ok || m.Above(old) || (m.SamePosition(old) && old.Signature == "") {
		s.seen[k] = m
	}
}

// Check returns the highest mark remembered for k, after validating k (the
// ports.WatermarkStore Check of a shared store).
func (s *Shared[S]) Check(k watermark.Key) (watermark.Mark, bool, error) {
	if err := k.Validate(); err != nil {
		return watermark.Mark{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.seen[k]
	return m, ok, nil
}

// State returns k's record as last read or written, and whether there is
// one.
func (s *Shared[S]) State(k watermark.Key) (S, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[k]
	return st, ok
}

// SetState stores k's record as just read or written.
func (s *Shared[S]) SetState(k watermark.Key, st S) {
	s.mu.Lock()
	s.states[k] = st
	s.mu.Unlock()
}

// ForgetState drops k's record, so that the next commit reads it again
// (after a failed condition or an error leaving the outcome unknown).
func (s *Shared[S]) ForgetState(k watermark.Key) {
	s.mu.Lock()
	delete(s.states, k)
	s.mu.Unlock()
}
