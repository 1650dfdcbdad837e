package ports

import "context"

// StoredKey is one persisted sealed key: the tz address it belongs to and the
// enclave's encrypted private key.
type StoredKey struct {
	PKH  string
	Blob []byte
}

// KeyStore persists sealed key blobs. It never sees a plain private key.
type KeyStore interface {
	// List returns every stored key.
	List(ctx context.Context) ([]StoredKey, error)
	// Put stores k durably. Storing a key whose PKH is already present
	// replaces that entry; it never creates a duplicate.
	Put(ctx context.Context, k StoredKey) error
}
