package softvault

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// keysOfEveryType returns one secret key of each type and their public keys.
func keysOfEveryType(t *testing.T) ([]string, []tezos.PublicKey) {
	var sks []string
	var pks []tezos.PublicKey
	for _, kt := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		pk, err := sk.Public()
		require.NoError(t, err)
		sks = append(sks, sk.Base58())
		pks = append(pks, pk)
	}
	return sks, pks
}

func TestContractFile(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	sks, pks := keysOfEveryType(t)
	var entries []fileEntry
	for i, sk := range sks {
		entries = append(entries, fileEntry{Name: pks[i].Type.String(), Value: "unencrypted:" + sk})
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	b, _ := json.Marshal(entries)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	enclavetest.Run(t, enclavetest.Backend{
		Open: func(t *testing.T) vault.Instance {
			inst, err := OpenFile(context.Background(), "file", decoder(t, "file: "+path), vault.Env{})
			require.NoError(t, err)
			return inst
		},
		Preloaded: pks,
	})
}

func TestContractMem(t *testing.T) {
	t.Setenv(PassphraseEnv, "")
	sks, pks := keysOfEveryType(t)
	enclavetest.Run(t, enclavetest.Backend{
		Open: func(t *testing.T) vault.Instance {
			inst, err := OpenMem(context.Background(), "mem", decoder(t, "- "+strings.Join(sks, "\n- ")), vault.Env{})
			require.NoError(t, err)
			return inst
		},
		Preloaded: pks,
		CanImport: true, // kept in memory only: KeysPersist is false
	})
}
