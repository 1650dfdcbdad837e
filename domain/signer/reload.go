package signer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// ReloadResult is what a reload changed.
type ReloadResult struct {
	KeysBefore, KeysAfter int
	// Added and Removed are the addresses of the keys now served and no
	// longer served, sorted.
	Added, Removed []string
	// PoliciesChanged are the addresses whose policy was added, removed
	// or changed, sorted.
	PoliciesChanged []string
	// AuthorizedKeysChanged reports a change of the server-wide
	// authorized client keys.
	AuthorizedKeysChanged bool
}

// ErrReloadRefused is in the chain of the errors of a reload that the new
// configuration itself refuses (as opposed to a key storage or an enclave
// that failed): retrying does not help until the configuration or the
// storage changes.
var ErrReloadRefused = errors.New("reload refused")

// Reload replaces the settings and brings the keys in line with every
// vault's key storage: keys stored since the last load are loaded into
// their enclave, keys no longer stored are no longer served. Nothing
// changes until all of it succeeded; then keys and settings change
// together, in one step, and commit (when non-nil) is called with the new
// snapshot before any other change can happen. Requests already running
// finish on the snapshot they started with; the watermarks are not
// touched.
//
// A key no longer stored whose address still has a policy in set refuses
// the reload (ErrReloadRefused): a key that may sign is only ever dropped
// on purpose, by removing its policy too, never because a storage listing
// came back short. A reload while the stored keys are still loading at
// start is refused as unavailable.
func (s *Service) Reload(ctx context.Context, set *Settings, commit func(Snapshot)) (ReloadResult, error) {
	if set == nil {
		return ReloadResult{}, domain.Errorf(domain.KindInvalid, "reload without settings")
	}
	if err := s.Ready(); err != nil {
		return ReloadResult{}, domain.Errorf(domain.KindUnavailable, "cannot reload while the stored keys load (%v): retry once /healthz answers 200", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()

	// Every vault's list first: a key stored in two vaults is refused,
	// naming both, as at start, before any key is loaded.
	stored := make(map[string]map[string]bool, len(s.order)) // vault → addresses
	lists := make(map[string][]ports.StoredKey, len(s.order))
	where := map[string]string{}
	for _, name := range s.order {
		v := s.vaults[name]
		if r, ok := v.Store.(ports.KeyStoreRefresher); ok {
			if err := r.Refresh(ctx); err != nil {
				return ReloadResult{}, fmt.Errorf("vault %q: re-reading the keys: %w", name, err)
			}
		}
		list, err := v.Store.List(ctx)
		if err != nil {
			return ReloadResult{}, fmt.Errorf("vault %q: listing stored keys: %w", name, err)
		}
		here := make(map[string]bool, len(list))
		for _, sk := range list {
			if other, dup := where[sk.PKH]; dup && other != name {
				return ReloadResult{}, &domain.Error{Kind: domain.KindInvalid, Err: ErrReloadRefused, Msg: fmt.Sprintf(
					"key %s is in vault %q and in vault %q: a key must be in one vault only; remove it from one of them", sk.PKH, other, name)}
			}
			where[sk.PKH] = name
			here[sk.PKH] = true
		}
		stored[name], lists[name] = here, list
	}
	var added []*Key
	for _, name := range s.order {
		v := s.vaults[name]
		var fresh []ports.StoredKey
		for _, sk := range lists[name] {
			if k, held := cur.keys[sk.PKH]; !held || k.Vault != name {
				fresh = append(fresh, sk)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		s.log.Info("loading new keys into the enclave", "vault", name, "keys", len(fresh))
		loaded, err := s.loadKeys(ctx, v, fresh, "loading new keys into vault "+name)
		if err != nil {
			return ReloadResult{}, err
		}
		added = append(added, loaded...)
	}

	res := ReloadResult{KeysBefore: len(cur.keys)}
	addedAddr := make(map[string]bool, len(added))
	for _, k := range added {
		addedAddr[k.Address] = true
		res.Added = append(res.Added, k.Address)
	}
	var stillNamed []string
	for addr, k := range cur.keys {
		if stored[k.Vault][addr] {
			continue
		}
		if addedAddr[addr] {
			continue // moved to another vault
		}
		if _, named := set.Policies[addr]; named {
			stillNamed = append(stillNamed, fmt.Sprintf("%s (vault %s)", addr, k.Vault))
			continue
		}
		res.Removed = append(res.Removed, addr)
	}
	if len(stillNamed) > 0 {
		sort.Strings(stillNamed)
		return ReloadResult{}, &domain.Error{Kind: domain.KindInvalid, Err: ErrReloadRefused, Msg: fmt.Sprintf(
			"keys no longer in their key storage but still named in the tezos section: %s; "+
				"restore them, or remove their policies to stop serving them", strings.Join(stillNamed, ", "))}
	}

	keys := make(map[string]*Key, len(cur.keys)+len(added))
	for addr, k := range cur.keys {
		keys[addr] = k
	}
	for _, addr := range res.Removed {
		delete(keys, addr)
	}
	for _, k := range added {
		keys[k.Address] = k
	}
	next := &state{keys: keys, set: set}
	res.KeysAfter = len(keys)
	res.PoliciesChanged = changedPolicies(cur.set, set)
	res.AuthorizedKeysChanged = !sameKeys(cur.set.AuthorizedKeys, set.AuthorizedKeys)
	sort.Strings(res.Added)
	sort.Strings(res.Removed)

	s.cur.Store(next)
	if commit != nil {
		commit(Snapshot{s: s, st: next})
	}
	return res, nil
}

// changedPolicies returns, sorted, the addresses whose policy differs
// between a and b (added, removed or changed), and "default" when the
// default policy changed.
func changedPolicies(a, b *Settings) []string {
	var out []string
	for addr, p := range a.Policies {
		if q, ok := b.Policies[addr]; !ok || !p.Equal(q) {
			out = append(out, addr)
		}
	}
	for addr := range b.Policies {
		if _, ok := a.Policies[addr]; !ok {
			out = append(out, addr)
		}
	}
	if !a.DefaultPolicy.Equal(b.DefaultPolicy) {
		out = append(out, "default")
	}
	sort.Strings(out)
	return out
}

// Equal reports whether p and q allow the same: lists are compared as sets
// (the order in which the configuration lists kinds, chains, keys or users
// changes nothing).
func (p *Policy) Equal(q *Policy) bool {
	if p == nil || q == nil {
		return p == q
	}
	if p.LogPayloads != q.LogPayloads || p.AllowProofOfPossession != q.AllowProofOfPossession ||
		!sameSet(p.AllowedChains, q.AllowedChains) || !sameSet(p.JWTUsers, q.JWTUsers) ||
		!sameKeys(p.AuthorizedKeys, q.AuthorizedKeys) || len(p.Allow) != len(q.Allow) {
		return false
	}
	for kind, ops := range p.Allow {
		qops, ok := q.Allow[kind]
		if !ok || !sameSet(ops, qops) {
			return false
		}
	}
	return true
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameKeys(a, b []tezos.PublicKey) bool {
	str := func(ks []tezos.PublicKey) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			out[i] = k.String()
		}
		return out
	}
	return sameSet(str(a), str(b))
}
