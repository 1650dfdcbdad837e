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

// KeyStoreRefresher is implemented by a KeyStore that lists a copy it read
// once (an in-process vault's key file): Refresh reads the source again, so
// that the next List shows the keys added to it or removed from it since.
// A reload calls it before it lists the keys. On error the list is
// unchanged.
type KeyStoreRefresher interface {
	Refresh(ctx context.Context) error
}
