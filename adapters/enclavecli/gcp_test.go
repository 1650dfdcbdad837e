package enclavecli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms/gcpkmstest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func TestRunGCP(t *testing.T) {
	const (
		wip = "projects/42/locations/global/workloadIdentityPools/p/providers/q"
		key = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
	)
	tokenFile := filepath.Join(t.TempDir(), "token")
	subject := gcpkmstest.WriteTokenFile(t, tokenFile)
	sts := gcpkmstest.NewSTS(t, gcpkms.AudiencePrefix+wip, subject, time.Hour)
	kms := gcpkmstest.NewKMS(t, sts.Valid)
	kms.AddKey(key)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"--listen", "127.0.0.1:0", "--kms", "gcp",
			"--gcp-token-file", tokenFile, "--gcp-sts-url", sts.URL,
			"--gcp-kms-endpoint", kms.Addr, "--gcp-kms-insecure", "--log-level", "debug"}, pw, &logs)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	go io.Copy(io.Discard, pr)

	call := wiretest.Dial(t, addr).Call
	require.NoError(t, call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: wip, EncryptionKeyPath: key}), nil))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, call(enclavewire.NewGenerateAndImport(enclavewire.KeyNistP256), &gi))
	plain, err := kms.Unseal(key, gi.EncryptedPrivateKey)
	require.NoError(t, err, "the blob is not Cloud KMS ciphertext under the session's key")
	require.True(t, bytes.HasPrefix(plain, []byte("\xa1\x68NistP256\x58\x20")))
	pk, err := gi.PublicKey.PublicKeyOf(tezos.P256)
	require.NoError(t, err)
	var sig enclavewire.Tagged
	msg := []byte("\x03op")
	require.NoError(t, call(enclavewire.NewSign(gi.Handle, msg, 2), &sig))
	s, err := sig.Signature(tezos.P256)
	require.NoError(t, err)
	require.NoError(t, pk.Verify(msg, s, 2))
	require.Equal(t, 1, sts.Issued())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	for _, secret := range append(sts.Tokens(), subject) {
		require.NotContains(t, logs.String(), secret, "a token reached the log")
	}
}

func TestRunGCPRejectsPlaintextToRemoteEndpoint(t *testing.T) {
	err := Run(context.Background(), []string{"--listen", "127.0.0.1:0", "--kms", "gcp",
		"--gcp-kms-endpoint", "192.0.2.1:443", "--gcp-kms-insecure"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "loopback")
}
