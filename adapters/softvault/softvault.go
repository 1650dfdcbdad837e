// Package softvault holds the in-process vaults `file` and `mem`, as
// Signatory has them for test networks and development: the private keys
// are read from a JSON key file (`file`) or from the configuration (`mem`)
// and kept in this process's memory, in the clear, where they sign. They
// implement the same port as the enclave backends (ports.Enclave, with a
// read-only ports.KeyStore listing the keys), so policy, watermarks,
// metrics and the HTTP API behave the same. Neither vault can generate
// keys; `mem` can import one (kept until the process exits), `file` is
// read-only (a reload reads its key file again). Each logs a warning at
// start that its keys are in the clear.
//
// The "sealed blob" of a key here is only its address: no secret ever
// crosses the port or reaches a store.
package softvault

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Enclave is an in-process key holder implementing ports.Enclave.
type Enclave struct {
	kind      string // "file" or "mem", for messages
	canImport bool

	mu     sync.RWMutex
	keys   map[tezos.PublicKeyHash]*held
	order  []tezos.PublicKeyHash
	closed bool
}

type held struct {
	sk tezos.PrivateKey
	pk tezos.PublicKey
}

var _ ports.Enclave = (*Enclave)(nil)

func newEnclave(kind string, canImport bool) *Enclave {
	return &Enclave{kind: kind, canImport: canImport, keys: make(map[tezos.PublicKeyHash]*held)}
}

// add takes ownership of sk; it reports false (and zeroes sk) when the key
// is already held.
func (e *Enclave) add(sk tezos.PrivateKey) (tezos.PublicKey, bool, error) {
	pk, err := sk.Public()
	if err != nil {
		sk.Zero()
		return tezos.PublicKey{}, false, err
	}
	pkh := pk.Hash()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		sk.Zero()
		return tezos.PublicKey{}, false, domain.Errorf(domain.KindUnavailable, "%s vault closed", e.kind)
	}
	if _, dup := e.keys[pkh]; dup {
		sk.Zero()
		return pk, false, nil
	}
	e.keys[pkh] = &held{sk: sk, pk: pk}
	e.order = append(e.order, pkh)
	return pk, true, nil
}

func (e *Enclave) get(pkh tezos.PublicKeyHash) (*held, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, domain.Errorf(domain.KindUnavailable, "%s vault closed", e.kind)
	}
	k, ok := e.keys[pkh]
	if !ok {
		return nil, domain.Errorf(domain.KindNotFound, "key %s is not in the %s vault", pkh, e.kind)
	}
	return k, nil
}

// Load returns the public key of a held key; blob is its address (what the
// vault's store lists).
func (e *Enclave) Load(_ context.Context, blob []byte) (tezos.PublicKey, error) {
	if len(blob) == 0 {
		return tezos.PublicKey{}, domain.Errorf(domain.KindInvalid, "empty key reference")
	}
	pkh, err := tezos.ParsePublicKeyHash(string(blob))
	if err != nil {
		return tezos.PublicKey{}, domain.Errorf(domain.KindInvalid, "the %s vault's key references are addresses: %v", e.kind, err)
	}
	k, err := e.get(pkh)
	if err != nil {
		return tezos.PublicKey{}, err
	}
	return k.pk, nil
}

// Generate is refused: the in-process vaults hold only the keys they are
// given.
func (e *Enclave) Generate(context.Context, tezos.KeyType) (ports.SealedKey, error) {
	return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "the %s vault cannot generate keys: list them in its %s", e.kind, map[string]string{"file": "key file", "mem": "configuration"}[e.kind])
}

// Import keeps a copy of sk in memory (mem vault; until the process exits)
// or is refused (file vault, which is read-only).
func (e *Enclave) Import(_ context.Context, sk tezos.PrivateKey) (ports.SealedKey, error) {
	if !e.canImport {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "the %s vault is read-only: add the key to its key file", e.kind)
	}
	cp, err := tezos.NewPrivateKey(sk.Type, sk.Bytes)
	if err != nil {
		return ports.SealedKey{}, domain.Errorf(domain.KindInvalid, "cannot import: %v", err)
	}
	pk, _, err := e.add(cp)
	if err != nil {
		return ports.SealedKey{}, err
	}
	return ports.SealedKey{PublicKey: pk, Blob: []byte(pk.Hash().String())}, nil
}

// Sign signs msg in this process.
func (e *Enclave) Sign(_ context.Context, key tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error) {
	k, err := e.get(key)
	if err != nil {
		return tezos.Signature{}, err
	}
	sig, err := k.sk.Sign(msg, version)
	if errors.Is(err, tezos.ErrInvalidSigningVersion) {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "invalid signing version %d for a BLS key (want 1, 2 or 255)", version)
	}
	if err != nil {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "signing with %s: %v", key, err)
	}
	return sig, nil
}

// ProvePossession returns a BLS proof of possession.
func (e *Enclave) ProvePossession(_ context.Context, key tezos.PublicKeyHash) (tezos.Signature, error) {
	if key.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "proof of possession needs a BLS (tz4) key, not %s", key)
	}
	k, err := e.get(key)
	if err != nil {
		return tezos.Signature{}, err
	}
	sig, err := k.sk.ProvePossession()
	if err != nil {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "proof of possession for %s: %v", key, err)
	}
	return sig, nil
}

// Ready is always ready until Close.
func (e *Enclave) Ready(context.Context) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return domain.Errorf(domain.KindUnavailable, "%s vault closed", e.kind)
	}
	return nil
}

// Close zeroes every key.
func (e *Enclave) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range e.keys {
		k.sk.Zero()
	}
	e.keys = map[tezos.PublicKeyHash]*held{}
	e.order = nil
	e.closed = true
	return nil
}

// store is the vault's key list as a ports.KeyStore: every held key, with
// its address as the blob. Put accepts only keys the vault already holds
// (a mem import); the file vault's keys change only in its file.
type store struct{ e *Enclave }

func (s store) List(context.Context) ([]ports.StoredKey, error) {
	s.e.mu.RLock()
	defer s.e.mu.RUnlock()
	out := make([]ports.StoredKey, 0, len(s.e.order))
	for _, pkh := range s.e.order {
		a := pkh.String()
		out = append(out, ports.StoredKey{PKH: a, Blob: []byte(a)})
	}
	return out, nil
}

func (s store) Put(_ context.Context, k ports.StoredKey) error {
	if !s.e.canImport {
		return domain.Errorf(domain.KindInvalid, "the %s vault is read-only", s.e.kind)
	}
	pkh, err := tezos.ParsePublicKeyHash(k.PKH)
	if err != nil {
		return domain.Wrap(domain.KindInvalid, err)
	}
	if _, err := s.e.get(pkh); err != nil {
		return fmt.Errorf("the %s vault stores only keys imported into it: %w", s.e.kind, err)
	}
	return nil
}
