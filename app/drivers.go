package app

import (
	"github.com/sigil-signer/sigil/adapters/confidentialspace"
	"github.com/sigil-signer/sigil/adapters/nitro"
	"github.com/sigil-signer/sigil/adapters/softvault"
	"github.com/sigil-signer/sigil/adapters/storage"
	storagedynamodb "github.com/sigil-signer/sigil/adapters/storage/dynamodb"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/adapters/storage/firestore"
	"github.com/sigil-signer/sigil/adapters/vault"
)

// vaultDrivers maps a vault `driver:` name to its adapter.
var vaultDrivers = map[string]vault.Opener{
	"confidentialspace": confidentialspace.OpenVault,
	"nitro":             nitro.OpenVault,
	"file":              softvault.OpenFile,
	"mem":               softvault.OpenMem,
}

// storageDrivers maps a key storage `driver:` name to its adapter.
var storageDrivers = map[string]storage.Opener{
	"file":      file.Open,
	"gcp":       firestore.Open,
	"firestore": firestore.Open,
	"aws":       storagedynamodb.Open,
	"dynamodb":  storagedynamodb.Open,
}

// DriverNames lists, sorted, the vault and watermark driver names this
// build knows (for tests that check a configuration without opening its
// drivers).
func DriverNames() (vaults, watermarks []string) {
	return keys(vaultDrivers), keys(watermarkDrivers)
}
