package enclaveserver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// recordingKMS is a per-session KMS that remembers which credentials it was
// made for and whether it was closed.
type recordingKMS struct {
	creds  enclaveside.ConfidentialSpaceCredentials
	mu     sync.Mutex
	closed bool
	seals  int
}

func (r *recordingKMS) Seal(ctx context.Context, plain []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline on the KMS call")
	}
	r.mu.Lock()
	r.seals++
	r.mu.Unlock()
	return append([]byte(r.creds.EncryptionKeyPath+":"), plain...), nil
}

func (r *recordingKMS) Open(_ context.Context, blob []byte) ([]byte, error) {
	prefix := r.creds.EncryptionKeyPath + ":"
	if len(blob) < len(prefix) || string(blob[:len(prefix)]) != prefix {
		return nil, errors.New("sealed under another key")
	}
	return append([]byte(nil), blob[len(prefix):]...), nil
}

func (r *recordingKMS) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// providerFunc adapts a function to enclaveside.KMSProvider.
type providerFunc func(ctx context.Context, c enclaveside.Credentials) (enclaveside.SessionKMS, error)

func (f providerFunc) ForSession(ctx context.Context, c enclaveside.Credentials) (enclaveside.SessionKMS, error) {
	return f(ctx, c)
}

func TestKMSProviderPerSession(t *testing.T) {
	var mu sync.Mutex
	var made []*recordingKMS
	refuse := true
	provider := providerFunc(func(ctx context.Context, c enclaveside.Credentials) (enclaveside.SessionKMS, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline on ForSession")
		}
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			refuse = false
			return nil, errors.New("token exchange refused")
		}
		k := &recordingKMS{creds: *c.ConfidentialSpace}
		made = append(made, k)
		return k, nil
	})
	_, addr := start(t, Options{Enclave: newEnclave(t, provider, "")})

	// A refused Initialize leaves the session uninitialized; it may retry.
	c := wiretest.Dial(t, addr)
	require.EqualError(t, c.Call(enclavewire.NewInitialize(creds), nil), "encryption error: token exchange refused")
	var gr enclavewire.GenerateResult
	require.EqualError(t, c.Call(enclavewire.NewGenerate(enclavewire.KeyEd25519), &gr), "uninitialized")
	require.NoError(t, c.Call(enclavewire.NewInitialize(creds), nil))
	require.NoError(t, c.Call(enclavewire.NewGenerate(enclavewire.KeyEd25519), &gr))

	// Another session with another key gets its own KMS: the first
	// session's blob does not open there, but does in the first.
	other := creds
	other.EncryptionKeyPath = "projects/p/locations/global/keyRings/r/cryptoKeys/other"
	c2 := wiretest.Dial(t, addr)
	require.NoError(t, c2.Call(enclavewire.NewInitialize(other), nil))
	var pk enclavewire.Tagged
	require.ErrorContains(t, c2.Call(enclavewire.NewPublicKeyFrom(gr.EncryptedPrivateKey), &pk), "sealed under another key")
	require.NoError(t, c.Call(enclavewire.NewPublicKeyFrom(gr.EncryptedPrivateKey), &pk))

	mu.Lock()
	require.Len(t, made, 2)
	require.Equal(t, creds.WIPProviderPath, made[0].creds.WIPProviderPath)
	require.Equal(t, creds.EncryptionKeyPath, made[0].creds.EncryptionKeyPath)
	require.Equal(t, other.EncryptionKeyPath, made[1].creds.EncryptionKeyPath)
	require.Equal(t, 1, made[0].seals)
	mu.Unlock()

	// Closing a connection closes its session's KMS.
	c.Conn.Close()
	require.Eventually(t, func() bool {
		made[0].mu.Lock()
		defer made[0].mu.Unlock()
		return made[0].closed
	}, 5*time.Second, 10*time.Millisecond)
	made[1].mu.Lock()
	require.False(t, made[1].closed)
	made[1].mu.Unlock()
}
