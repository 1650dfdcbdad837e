package signer

import (
	"context"
	"sort"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Settings are the part of the service's configuration that a reload may
// change: the keys' policies, the server-wide authorized client keys and
// the policy hook.
type Settings struct {
	// Policies maps a tz address to what it may sign (Options.Policies).
	Policies map[string]*Policy
	// DefaultPolicy applies to keys absent from Policies (development
	// only; nil in production).
	DefaultPolicy *Policy
	// AuthorizedKeys are the server-wide client keys (Options.AuthorizedKeys).
	AuthorizedKeys []tezos.PublicKey
	// PolicyHook, when set, must approve every request the key's policy
	// allows (Options.PolicyHook).
	PolicyHook ports.PolicyHook
}

// state is one immutable snapshot of the service: the keys it signs with
// and its settings. It is never modified once published; writers build a
// new one.
type state struct {
	keys map[string]*Key // by tz address
	set  *Settings
}

func (st *state) policyFor(pkh string) *Policy {
	if p, ok := st.set.Policies[pkh]; ok {
		return p
	}
	return st.set.DefaultPolicy
}

// update publishes a new snapshot whose keys are the current ones changed
// by edit (which may add and delete), with the same settings, and tells
// the change listener.
func (s *Service) update(edit func(keys map[string]*Key)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	keys := make(map[string]*Key, len(cur.keys)+1)
	for a, k := range cur.keys {
		keys[a] = k
	}
	edit(keys)
	next := &state{keys: keys, set: cur.set}
	s.cur.Store(next)
	if s.onChange != nil {
		s.onChange(Snapshot{s: s, st: next})
	}
}

// OnChange installs fn and calls it at once with the current snapshot, then
// with the new snapshot each time keys are added outside a reload (loading
// at start, generate, import). It runs while no other change can happen,
// so it sees every snapshot in order; it must not call back into the
// service's writers. A reload calls its own commit function instead.
func (s *Service) OnChange(fn func(Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = fn
	if fn != nil {
		fn(Snapshot{s: s, st: s.cur.Load()})
	}
}

// Snapshot is the service as of one moment: its keys and its settings.
// Every request a snapshot serves sees exactly these, whatever reload
// happens meanwhile, so a request is decided wholly by the old
// configuration or wholly by the new one, never by a mix. The Service's
// own Key, Sign, ProvePossession and AuthorizedKeys take the current
// snapshot once per call.
type Snapshot struct {
	s  *Service
	st *state
}

// Snapshot returns the current snapshot.
func (s *Service) Snapshot() Snapshot { return Snapshot{s: s, st: s.cur.Load()} }

// Settings returns the snapshot's settings (not to be modified).
func (v Snapshot) Settings() *Settings { return v.st.set }

// Count returns how many keys the snapshot holds.
func (v Snapshot) Count() int { return len(v.st.keys) }

// Key returns the key with address pkh.
func (v Snapshot) Key(pkh string) (Key, error) { return v.s.keyIn(v.st, pkh) }

// Sign is Service.Sign on this snapshot.
func (v Snapshot) Sign(ctx context.Context, req SignRequest) (tezos.Signature, error) {
	return v.s.sign(ctx, v.st, req)
}

// ProvePossession is Service.ProvePossession on this snapshot.
func (v Snapshot) ProvePossession(ctx context.Context, req PossessionRequest) (tezos.Signature, error) {
	return v.s.provePossession(ctx, v.st, req)
}

// AuthorizedKeys returns the hashes of the snapshot's server-wide
// authorized client keys; empty when requests need no authentication.
func (v Snapshot) AuthorizedKeys() []tezos.PublicKeyHash {
	out := make([]tezos.PublicKeyHash, len(v.st.set.AuthorizedKeys))
	for i, k := range v.st.set.AuthorizedKeys {
		out[i] = k.Hash()
	}
	return out
}

// PolicyFor returns the policy that applies to the key with address pkh in
// this snapshot (see Service.PolicyFor).
func (v Snapshot) PolicyFor(pkh string) *Policy { return v.st.policyFor(pkh) }

// List returns the snapshot's keys, ordered by vault then address.
func (v Snapshot) List() []Key {
	out := make([]Key, 0, len(v.st.keys))
	for _, k := range v.st.keys {
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Vault != out[j].Vault {
			return out[i].Vault < out[j].Vault
		}
		return out[i].Address < out[j].Address
	})
	return out
}
