package signer_test

import (
	"context"
	"errors"
	"sync"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// fakeEnclave keeps keys in memory; its "sealed" blob is a key index, so
// tests can check that only blobs it issued are accepted.
type fakeEnclave struct {
	mu     sync.Mutex
	sealed [][]byte // blob → secret (blob = 1-byte index)
	loaded map[tezos.PublicKeyHash]tezos.PrivateKey
	fail   error
}

func newFakeEnclave() *fakeEnclave {
	return &fakeEnclave{loaded: map[tezos.PublicKeyHash]tezos.PrivateKey{}}
}

func (e *fakeEnclave) seal(sk tezos.PrivateKey) ports.SealedKey {
	pk, _ := sk.Public()
	e.sealed = append(e.sealed, sk.Bytes)
	e.loaded[pk.Hash()] = tezos.PrivateKey{Type: sk.Type, Bytes: append([]byte(nil), sk.Bytes...)}
	return ports.SealedKey{PublicKey: pk, Blob: []byte{byte(len(e.sealed) - 1), byte(sk.Type)}}
}

func (e *fakeEnclave) Load(_ context.Context, blob []byte) (tezos.PublicKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return tezos.PublicKey{}, e.fail
	}
	if len(blob) != 2 || int(blob[0]) >= len(e.sealed) {
		return tezos.PublicKey{}, errors.New("bad blob")
	}
	sk := tezos.PrivateKey{Type: tezos.KeyType(blob[1]), Bytes: e.sealed[blob[0]]}
	pk, err := sk.Public()
	if err != nil {
		return tezos.PublicKey{}, err
	}
	e.loaded[pk.Hash()] = sk
	return pk, nil
}

func (e *fakeEnclave) Generate(_ context.Context, t tezos.KeyType) (ports.SealedKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return ports.SealedKey{}, e.fail
	}
	sk, err := tezos.GeneratePrivateKey(t, nil)
	if err != nil {
		return ports.SealedKey{}, err
	}
	return e.seal(sk), nil
}

func (e *fakeEnclave) Import(_ context.Context, sk tezos.PrivateKey) (ports.SealedKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return ports.SealedKey{}, e.fail
	}
	return e.seal(tezos.PrivateKey{Type: sk.Type, Bytes: append([]byte(nil), sk.Bytes...)}), nil
}

func (e *fakeEnclave) Sign(_ context.Context, key tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error) {
	e.mu.Lock()
	sk, ok := e.loaded[key]
	e.mu.Unlock()
	if !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "no key %s in enclave", key)
	}
	return sk.Sign(msg, version)
}

func (e *fakeEnclave) ProvePossession(_ context.Context, key tezos.PublicKeyHash) (tezos.Signature, error) {
	e.mu.Lock()
	sk, ok := e.loaded[key]
	e.mu.Unlock()
	if !ok {
		return tezos.Signature{}, domain.Errorf(domain.KindNotFound, "no key %s in enclave", key)
	}
	return sk.ProvePossession()
}

func (e *fakeEnclave) Ready(context.Context) error { return nil }

type memStore struct {
	mu       sync.Mutex
	keys     []ports.StoredKey
	fail     error // of Put
	listFail error // of List
}

func (m *memStore) List(context.Context) ([]ports.StoredKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listFail != nil {
		return nil, m.listFail
	}
	return append([]ports.StoredKey(nil), m.keys...), nil
}

func (m *memStore) Put(_ context.Context, k ports.StoredKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for i := range m.keys {
		if m.keys[i].PKH == k.PKH {
			m.keys[i] = k
			return nil
		}
	}
	m.keys = append(m.keys, k)
	return nil
}
