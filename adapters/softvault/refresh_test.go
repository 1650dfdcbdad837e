package softvault

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// TestFileVaultRefresh: a reload reads the key file again. Keys added to
// it are listed and open; keys removed from it are no longer listed but
// still sign (a request already running with one completes); a file that
// no longer parses changes nothing.
func TestFileVaultRefresh(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	ctx := context.Background()
	gen := func() (tezos.PrivateKey, string) {
		sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
		require.NoError(t, err)
		pk, _ := sk.Public()
		return sk, pk.Hash().String()
	}
	skA, a := gen()
	skB, b := gen()
	path := filepath.Join(t.TempDir(), "secret.json")
	write := func(keys ...tezos.PrivateKey) {
		var entries []fileEntry
		for _, sk := range keys {
			entries = append(entries, fileEntry{Value: "unencrypted:" + sk.Base58()})
		}
		raw, err := json.Marshal(entries)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, raw, 0o600))
	}
	write(skA)
	inst, err := OpenFile(ctx, "local", decoder(t, "file: "+path), vault.Env{})
	require.NoError(t, err)
	defer inst.Close()
	require.Equal(t, []string{a}, addresses(t, inst))
	refresher, ok := inst.Store.(ports.KeyStoreRefresher)
	require.True(t, ok, "the file vault's store re-reads its file on a reload")

	write(skB) // a replaced by b
	require.Equal(t, []string{a}, addresses(t, inst), "nothing changes before a refresh")
	require.NoError(t, refresher.Refresh(ctx))
	require.Equal(t, []string{b}, addresses(t, inst))
	pk, err := inst.Enclave.Load(ctx, []byte(b))
	require.NoError(t, err)
	require.Equal(t, b, pk.Hash().String())
	for _, who := range []string{a, b} {
		h, err := tezos.ParsePublicKeyHash(who)
		require.NoError(t, err)
		_, err = inst.Enclave.Sign(ctx, h, []byte{3, 1}, tezos.SignVersion2)
		require.NoError(t, err, who)
	}

	require.NoError(t, os.WriteFile(path, []byte(`[{"value": "unencrypted:edskNOPE"}]`), 0o600))
	err = refresher.Refresh(ctx)
	require.ErrorContains(t, err, "entry 1")
	require.NotContains(t, err.Error(), "edskNOPE")
	require.Equal(t, []string{b}, addresses(t, inst), "a broken file changes nothing")
}
