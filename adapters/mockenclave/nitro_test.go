package mockenclave

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc"
	"github.com/sigil-signer/sigil/adapters/confidentialspace/rpc/rpctest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestModes: each mode accepts its own platform's Initialize only, with the
// fields the enclave needs; the rest of the protocol is the same.
func TestModes(t *testing.T) {
	aws := rpc.AWSCredentials{AccessKeyID: "AKIA", SecretAccessKey: "secret", EncryptionKeyID: "arn:aws:kms:eu-west-1:1:key/k", Region: "eu-west-1"}

	_, nitro := start(t, Options{Mode: ModeNitro})
	c := rpctest.Dial(t, nitro)
	require.ErrorContains(t, c.Call(rpc.NewInitialize(creds), nil), "AWS Nitro mode")
	noRegion := aws
	noRegion.Region = ""
	require.ErrorContains(t, rpctest.Dial(t, nitro).Call(rpc.NewInitializeAWS(noRegion), nil), "region are required")
	c = rpctest.Dial(t, nitro)
	require.NoError(t, c.Call(rpc.NewInitializeAWS(aws), nil))
	require.EqualError(t, c.Call(rpc.NewInitializeAWS(aws), nil), "already initialized")
	var gi rpc.GenerateAndImportResult
	require.NoError(t, c.Call(rpc.NewGenerateAndImport(rpc.KeyEd25519), &gi))
	var sig rpc.Tagged
	require.NoError(t, c.Call(rpc.NewSign(gi.Handle, []byte("m"), 2), &sig))
	pk, err := gi.PublicKey.PublicKeyOf(tezos.Ed25519)
	require.NoError(t, err)
	s, err := sig.Signature(tezos.Ed25519)
	require.NoError(t, err)
	require.NoError(t, pk.Verify([]byte("m"), s, 2))

	_, cs := start(t, Options{Mode: ModeConfidentialSpace})
	require.ErrorContains(t, rpctest.Dial(t, cs).Call(rpc.NewInitializeAWS(aws), nil), "Confidential Space mode")
	require.NoError(t, rpctest.Dial(t, cs).Call(rpc.NewInitialize(creds), nil))
}
