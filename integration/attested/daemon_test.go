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
	"github.com/sigil-signer/sigil/adapters/securechannel"
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
// key file, admitting the pins its workload's launch environment lists.
func (d *daemonWorld) enclave(t *testing.T, wl attestationtest.Workload) *harness.Enclave {
	t.Helper()
	l := attestationtest.NewLauncher(t, d.iss, wl)
	return harness.StartEnclave(t, harness.EnclaveOptions{
		KMSKeyFile: d.kmsFile,
		Args:       []string{"--attested", "--launcher-socket", l.Socket, "--attest-start-timeout", "20s", "--log-level", "debug"},
		Env:        []string{attestation.DefaultClientPinsEnv + "=" + wl.Env[attestation.DefaultClientPinsEnv]},
	})
}

// sign asks the daemon for a signature of the transaction and checks it
// with crypto/ed25519 over blake2b-256 of the message (not the daemon's or
// the enclave's code).
func (d *daemonWorld) sign(t *testing.T, api string) {
	t.Helper()
	r := harness.PostSign(&http.Client{Timeout: 30 * time.Second}, api+"/keys/"+d.pk.Hash().String(), transaction)
	require.NoError(t, r.Err)
	require.Equal(t, http.StatusOK, r.Status, r.Body)
	sig, err := tezos.ParseSignature(r.Signature)
	require.NoError(t, err)
	digest := blake2b.Sum256(transaction)
	require.True(t, ed25519.Verify(ed25519.PublicKey(d.pk.Bytes), digest[:], sig.Bytes), "the signature does not verify")
}

// refusedBy waits until the daemon's log names claim, and checks that it
// loaded no key and that /healthz answers 503 with the claim in its
// reason.
func refusedBy(t *testing.T, sigil *harness.Daemon, claim, says string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(sigil.Log(), "claim "+claim) }, 30*time.Second, 50*time.Millisecond,
		"the daemon's log does not name the claim %s", claim)
	require.Contains(t, sigil.Log(), says)
	resp, err := http.Get(sigil.Utility + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Contains(t, string(body), claim, "the readiness reason does not name the claim")
	require.NotContains(t, sigil.Log(), "signer ready")
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

	d.sign(t, sigil.API)

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
			refusedBy(t, sigil, c.claim, c.says)
			require.Eventually(t, func() bool { return strings.Contains(e.Log(), "handshake refused") }, 10*time.Second, 20*time.Millisecond)
			require.NotContains(t, e.Log(), "attested channel up")
		})
	}
}

// TestAttestDaemonNotPinned: an enclave launched for another daemon's key
// (its launch environment, hence its token, lists another pin) is refused
// by `sigil serve` with the claim naming the variable and this daemon's
// pin; nothing reaches the enclave but aborted handshakes.
func TestAttestDaemonNotPinned(t *testing.T) {
	d := newDaemonWorld(t)
	other, err := securechannel.GenerateClientKey(filepath.Join(t.TempDir(), "other.key"))
	require.NoError(t, err)
	wl := d.workload()
	wl.Env = map[string]string{attestation.DefaultClientPinsEnv: other.Pin.String()}
	e := d.enclave(t, wl)
	sigil := harness.StartDaemon(t, harness.DaemonOptions{Config: d.config(t, "not-pinned", e.Addr()), Listening: true})
	refusedBy(t, sigil, attestation.ClaimEnv+"."+attestation.DefaultClientPinsEnv, d.key.Pin.String())
	require.Eventually(t, func() bool { return strings.Contains(e.Log(), "handshake refused") }, 10*time.Second, 20*time.Millisecond)
	require.NotContains(t, e.Log(), "attested channel up")
}

// TestAttestDaemonManInTheMiddle: `sigil serve` pointed at a proxy with its
// own certificate carrying the enclave's genuine token refuses it
// (eat_nonce: bound to another key), and the enclave refuses the proxy's
// key and logs its pin. No key loads through the proxy.
func TestAttestDaemonManInTheMiddle(t *testing.T) {
	d := newDaemonWorld(t)
	e := d.enclave(t, d.workload())
	p := startProxy(t, e.Addr())
	sigil := harness.StartDaemon(t, harness.DaemonOptions{Config: d.config(t, "mitm", p.addr), Listening: true})
	refusedBy(t, sigil, attestation.ClaimNonce, "bound to another key")
	require.Eventually(t, func() bool {
		return strings.Contains(e.Log(), "client key "+p.pin.String()+" is not pinned")
	}, 10*time.Second, 20*time.Millisecond, "the enclave did not log the proxy's pin")
	require.NotContains(t, e.Log(), "attested channel up")
}

// TestAttestDaemonRefreshInBand: with 6-second tokens (their refresh
// window, the last quarter, holds at least one of the daemon's idle probes,
// one a second, with room for a loaded machine), `sigil serve` signs every
// 100 ms for more than two token lifetimes on the connections it made at
// start: they are refreshed in
// band (AttestationToken requests outnumber handshakes more than twice,
// and no connection is redialed), none is refused, every signature
// verifies.
func TestAttestDaemonRefreshInBand(t *testing.T) {
	d := newDaemonWorld(t)
	wl := d.workload()
	wl.Lifetime = 6 * time.Second
	e := d.enclave(t, wl)
	sigil := harness.StartDaemon(t, harness.DaemonOptions{Config: d.config(t, "refresh", e.Addr())})
	end := time.Now().Add(2*wl.Lifetime + 2*time.Second)
	n := 0
	for ; time.Now().Before(end); n++ {
		d.sign(t, sigil.API)
		time.Sleep(100 * time.Millisecond)
	}
	up := strings.Count(e.Log(), "attested channel up")
	tokens := strings.Count(e.Log(), "method=AttestationToken")
	t.Logf("%d signatures, %d attested connections, %d AttestationToken requests", n, up, tokens)
	require.Equal(t, 2, up, "the daemon redialed (connections: 2)")
	require.Greater(t, tokens, 2*up, "the connections were not refreshed in band")
	require.NotContains(t, e.Log(), "handshake refused")
}
