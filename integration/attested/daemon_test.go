package attested

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/blake2b"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/storage/file"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// transaction is a generic operation with one transaction, which the test
// policy allows.
var transaction = func() []byte {
	b, err := hex.DecodeString(loadgen.GenericTransactionHex)
	if err != nil {
		panic(err)
	}
	return b
}()

// daemonWorld is the daemon's side: a key sealed by the local KMS stand-in
// in a file key store, which the enclave process opens with the same KMS
// key file.
type daemonWorld struct {
	*world
	dir, kmsFile, keysFile string
	pk                     tezos.PublicKey
}

func newDaemonWorld(t *testing.T) *daemonWorld {
	t.Helper()
	d := &daemonWorld{world: newWorld(t), dir: t.TempDir()}
	d.kmsFile, d.keysFile = filepath.Join(d.dir, "enclave-kms.key"), filepath.Join(d.dir, "keys.json")
	kms, err := localstandin.New(d.kmsFile)
	require.NoError(t, err)
	st, err := file.New(d.keysFile)
	require.NoError(t, err)
	d.pk = harness.SealKey(t, kms, st, tezos.Ed25519)
	return d
}

// enclave starts sigil-enclave --attested --kms local with the world's KMS
// key file.
func (d *daemonWorld) enclave(t *testing.T, wl attestationtest.Workload) *harness.Enclave {
	t.Helper()
	l := attestationtest.NewLauncher(t, d.iss, wl)
	return harness.StartEnclave(t, harness.EnclaveOptions{
		KMSKeyFile: d.kmsFile,
		Args:       []string{"--attested", "--launcher-socket", l.Socket, "--attest-start-timeout", "20s", "--log-level", "debug"},
		Env:        []string{attestation.DefaultClientPinsEnv + "=" + d.key.Pin.String()},
	})
}

// config writes the daemon's configuration: the confidentialspace vault at
// addr with its attested_channel section, the key file, a policy allowing
// transactions.
func (d *daemonWorld) config(t *testing.T, name, addr string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	base := filepath.Join(d.dir, name)
	require.NoError(t, os.MkdirAll(base, 0o700))
	var b strings.Builder
	fmt.Fprintf(&b, "base_dir: %s\n", base)
	b.WriteString("server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n")
	b.WriteString("vaults:\n  cs:\n    driver: confidentialspace\n    config:\n")
	fmt.Fprintf(&b, "      host: %s\n      port: %q\n", host, port)
	b.WriteString("      wip_provider_path: attested/wip\n      encryption_key_path: attested/kms\n")
	b.WriteString("      connections: 2\n      dial_timeout: 5s\n")
	fmt.Fprintf(&b, "      storage:\n        driver: file\n        config: %s\n", d.keysFile)
	b.WriteString("      attested_channel:\n")
	fmt.Fprintf(&b, "        client_key_file: %s\n", d.keyFile)
	fmt.Fprintf(&b, "        image_digests: [%q]\n", attestationtest.Digest)
	fmt.Fprintf(&b, "        issuer: %s\n", d.iss.URL)
	fmt.Fprintf(&b, "        issuer_ca_file: %s\n", d.caFile)
	b.WriteString("watermark:\n  driver: mem\n")
	fmt.Fprintf(&b, "tezos:\n  %s:\n    allow:\n      generic: [transaction]\n", d.pk.Hash())
	path := filepath.Join(base, "sigil.yaml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path
}

// TestAttestDaemonSigns: `sigil serve` with the attested_channel section
// loads its key through the enclave process over the attested channel and
// signs; the signature verifies with crypto/ed25519 over blake2b-256 of the
// message (not the daemon's or the enclave's code). The enclave saw the
// daemon's pin and no refused handshake.
func TestAttestDaemonSigns(t *testing.T) {
	d := newDaemonWorld(t)
	e := d.enclave(t, d.workload())
	sigil := harness.StartDaemon(t, harness.DaemonOptions{Config: d.config(t, "good", e.Addr())})
	require.Equal(t, 1, sigil.Keys)

	r := harness.PostSign(&http.Client{Timeout: 30 * time.Second}, sigil.API+"/keys/"+d.pk.Hash().String(), transaction)
	require.NoError(t, r.Err)
	require.Equal(t, http.StatusOK, r.Status, r.Body)
	sig, err := tezos.ParseSignature(r.Signature)
	require.NoError(t, err)
	digest := blake2b.Sum256(transaction)
	require.True(t, ed25519.Verify(ed25519.PublicKey(d.pk.Bytes), digest[:], sig.Bytes), "the signature does not verify")

	require.NotContains(t, e.Log(), "handshake refused")
	require.Contains(t, e.Log(), "attested channel up")
	require.Contains(t, e.Log(), d.key.Pin.String())
}

// TestAttestDaemonRefuses: `sigil serve` refuses an enclave process whose
// token says another image digest, or a debug image: the key does not
// load, /healthz answers 503, and the daemon's log names the claim and what
// the token said; the enclave only saw aborted handshakes.
func TestAttestDaemonRefuses(t *testing.T) {
	d := newDaemonWorld(t)
	wrongDigest := d.workload()
	wrongDigest.ImageDigest = otherDigest
	debug := d.workload()
	debug.Debug = true
	for _, c := range []struct {
		name        string
		wl          attestationtest.Workload
		claim, says string
	}{
		{"wrong image digest", wrongDigest, attestation.ClaimImageDigest, otherDigest},
		{"debug image", debug, attestation.ClaimDebugStatus, "enabled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := d.enclave(t, c.wl)
			sigil := harness.StartDaemon(t, harness.DaemonOptions{Config: d.config(t, strings.ReplaceAll(c.name, " ", "-"), e.Addr()), Listening: true})
			require.Eventually(t, func() bool { return strings.Contains(sigil.Log(), "claim "+c.claim) }, 30*time.Second, 50*time.Millisecond,
				"the daemon's log does not name the claim %s", c.claim)
			require.Contains(t, sigil.Log(), c.says)
			resp, err := http.Get(sigil.Utility + "/healthz")
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
			require.Contains(t, string(body), c.claim, "the readiness reason does not name the claim")
			require.NotContains(t, sigil.Log(), "signer ready")
			require.Eventually(t, func() bool { return strings.Contains(e.Log(), "handshake refused") }, 10*time.Second, 20*time.Millisecond)
			require.NotContains(t, e.Log(), "attested channel up")
		})
	}
}
