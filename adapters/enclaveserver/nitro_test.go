package enclaveserver

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestModes: each mode accepts its own platform's Initialize only, with the
// fields the enclave needs; the rest of the protocol is the same.
func TestModes(t *testing.T) {
	aws := enclavewire.AWSCredentials{AccessKeyID: "AKIA", SecretAccessKey: "secret", EncryptionKeyID: "arn:aws:kms:eu-west-1:1:key/k", Region: "eu-west-1"}

	_, nitro := start(t, Options{Enclave: newEnclave(t, nil, enclave.PlatformNitro)})
	c := wiretest.Dial(t, nitro)
	require.ErrorContains(t, c.Call(enclavewire.NewInitialize(creds), nil), "AWS Nitro mode")
	noRegion := aws
	noRegion.Region = ""
	require.ErrorContains(t, wiretest.Dial(t, nitro).Call(enclavewire.NewInitializeAWS(noRegion), nil), "region are required")
	c = wiretest.Dial(t, nitro)
	require.NoError(t, c.Call(enclavewire.NewInitializeAWS(aws), nil))
	require.EqualError(t, c.Call(enclavewire.NewInitializeAWS(aws), nil), "already initialized")
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, c.Call(enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
	var sig enclavewire.Tagged
	require.NoError(t, c.Call(enclavewire.NewSign(gi.Handle, []byte("m"), 2), &sig))
	pk, err := gi.PublicKey.PublicKeyOf(tezos.Ed25519)
	require.NoError(t, err)
	s, err := sig.Signature(tezos.Ed25519)
	require.NoError(t, err)
	require.NoError(t, pk.Verify([]byte("m"), s, 2))

	_, cs := start(t, Options{Enclave: newEnclave(t, nil, enclave.PlatformConfidentialSpace)})
	require.ErrorContains(t, wiretest.Dial(t, cs).Call(enclavewire.NewInitializeAWS(aws), nil), "Confidential Space mode")
	require.NoError(t, wiretest.Dial(t, cs).Call(enclavewire.NewInitialize(creds), nil))
}
