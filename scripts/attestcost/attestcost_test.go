package attestcost

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/scripts/internal/rig"
)

var (
	requests    = flag.Int("requests", 3000, "signed requests per daemon per round")
	rounds      = flag.Int("rounds", 1, "rounds (plain then attested, alternating)")
	connects    = flag.Int("connects", 50, "new connections per channel for the connect cost")
	concurrency = flag.Int("concurrency", 4, "sigil-load clients")
)

func TestMain(m *testing.M) { harness.Main(m) }

// figures is one round's CPU per request (µs) of each process.
type figures struct {
	daemon, enclave float64
	ok, n           int
}

// TestAttestCost measures the attested channel against the plain protocol
// through the real processes, in one run, and checks every figure was
// obtained: each daemon signs (a signature checked with crypto/ed25519),
// every request of every round succeeds, every figure is positive.
func TestAttestCost(t *testing.T) {
	harness.SkipIfShort(t)
	bin := t.TempDir()
	for _, pkg := range []string{"./cmd/sigil", "./cmd/sigil-enclave", "./cmd/sigil-load"} {
		if err := os.Symlink(harness.BuildBinary(t, pkg), filepath.Join(bin, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	r, err := rig.New(bin)
	if err != nil {
		t.Fatal(err)
	}
	keep := false
	t.Cleanup(func() { r.Close(keep) })
	fail := func(err error) {
		t.Helper()
		keep = true
		t.Fatalf("%v (logs in %s)", err, r.Dir)
	}
	if err := r.MakeKeys(1, tezos.Ed25519); err != nil {
		fail(err)
	}
	pkh, pk := r.Keys[0].PKH, r.Keys[0].PK

	// The daemon's key, the fake issuer and launcher attesting a workload
	// whose launch environment pins that key.
	keyFile := filepath.Join(r.Dir, "enclave-client.key")
	ck, err := securechannel.GenerateClientKey(keyFile)
	if err != nil {
		fail(err)
	}
	iss := attestationtest.NewIssuer(t)
	launcher := attestationtest.NewLauncher(t, iss, attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: ck.Pin.String()},
	})
	caFile := filepath.Join(r.Dir, "issuer-ca.pem")
	if err := os.WriteFile(caFile, iss.CAPEM(), 0o600); err != nil {
		fail(err)
	}
	settings := securechannel.ClientSettings{ClientKeyFile: keyFile, ImageDigests: []string{attestationtest.Digest},
		Issuer: iss.URL, IssuerCAFile: caFile}

	plainEnc, plainAddr, err := r.StartEnclave("enclave-plain", 0)
	if err != nil {
		fail(err)
	}
	r.Env = []string{attestation.DefaultClientPinsEnv + "=" + ck.Pin.String()}
	attEnc, attAddr, err := r.StartEnclave("enclave-attested", 0, "--attested", "--launcher-socket", launcher.Socket)
	r.Env = nil
	if err != nil {
		fail(err)
	}
	policy := "    allow:\n      generic: [transaction]\n"
	plainD, err := r.StartDaemon("daemon-plain", rig.DaemonConfig{Enclave: plainAddr, Connections: 4, Watermark: "mem", Policy: policy})
	if err != nil {
		fail(err)
	}
	attD, err := r.StartDaemon("daemon-attested", rig.DaemonConfig{Enclave: attAddr, Connections: 4, Watermark: "mem", Policy: policy,
		VaultExtra: fmt.Sprintf("attested_channel:\n  client_key_file: %s\n  image_digests: [%q]\n  issuer: %s\n  issuer_ca_file: %s\n",
			keyFile, attestationtest.Digest, iss.URL, caFile)})
	if err != nil {
		fail(err)
	}
	for _, d := range []*rig.Daemon{plainD, attD} {
		if err := signOnce(d.API, pkh, pk); err != nil {
			fail(fmt.Errorf("%s: %v", d.Name, err))
		}
	}

	// Per request: alternating rounds, the same load on each.
	var plain, att []figures
	for i := range *rounds {
		for _, side := range []struct {
			d   *rig.Daemon
			enc *rig.Proc
			out *[]figures
		}{{plainD, plainEnc, &plain}, {attD, attEnc, &att}} {
			f, err := measure(bin, side.d, side.enc, pkh)
			if err != nil {
				fail(fmt.Errorf("round %d, %s: %v", i+1, side.d.Name, err))
			}
			*side.out = append(*side.out, f)
		}
	}

	// Per connection: this process dials as the daemon does (the same
	// client code), so that the daemon's side of a connection is measured
	// without the rest of a daemon's start.
	client, err := settings.Client(slog.New(slog.DiscardHandler))
	if err != nil {
		fail(err)
	}
	plainConn := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", plainAddr)
	}
	attConn := func(ctx context.Context) (net.Conn, error) { return client.Dial(ctx, "tcp", attAddr) }
	if _, _, err := connectCost(attConn, attEnc, 1); err != nil { // the issuer's keys fetched and cached
		fail(err)
	}
	pcD, pcE, err := connectCost(plainConn, plainEnc, *connects)
	if err != nil {
		fail(fmt.Errorf("plain connects: %v", err))
	}
	acD, acE, err := connectCost(attConn, attEnc, *connects)
	if err != nil {
		fail(fmt.Errorf("attested connects: %v", err))
	}

	var w bytes.Buffer
	fmt.Fprintf(&w, "attested channel cost, %s, load %s, %d requests × %d rounds per daemon, %d clients, %d connects\n",
		time.Now().UTC().Format(time.RFC3339), rig.LoadAvg(), *requests, *rounds, *concurrency, *connects)
	fmt.Fprintf(&w, "| round | plain: daemon / enclave CPU per request | attested: daemon / enclave | overhead: daemon / enclave |\n|---|---|---|---|\n")
	for i := range plain {
		p, a := plain[i], att[i]
		fmt.Fprintf(&w, "| %d | %.1f / %.1f µs | %.1f / %.1f µs | %+.1f µs (%+.1f %%) / %+.1f µs (%+.1f %%) |\n", i+1,
			p.daemon, p.enclave, a.daemon, a.enclave, a.daemon-p.daemon, 100*(a.daemon-p.daemon)/p.daemon,
			a.enclave-p.enclave, 100*(a.enclave-p.enclave)/p.enclave)
		if p.ok != p.n || a.ok != a.n || p.daemon <= 0 || a.daemon <= 0 || p.enclave <= 0 || a.enclave <= 0 {
			keep = true
			t.Errorf("round %d: incomplete: plain %+v, attested %+v", i+1, p, a)
		}
	}
	fmt.Fprintf(&w, "connect + Initialize, plain: client / enclave CPU %.1f / %.1f µs; attested: %.1f / %.1f µs\n", pcD, pcE, acD, acE)
	if acD <= 0 || acE <= 0 {
		keep = true
		t.Errorf("connect figures missing: attested %v / %v", acD, acE)
	}
	t.Log("\n" + w.String())
}

// measure runs sigil-load against d and returns CPU per request of d and
// enc over the whole run (warm-up included in the count).
func measure(bin string, d *rig.Daemon, enc *rig.Proc, pkh string) (figures, error) {
	d0, e0 := d.CPU(), enc.CPU()
	cmd := exec.Command(filepath.Join(bin, "sigil-load"), "--url", d.API, "--key", pkh, "--op", "generic",
		"--concurrency", strconv.Itoa(*concurrency), "--requests", strconv.Itoa(*requests), "--warmup", "0s", "--json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return figures{}, fmt.Errorf("sigil-load: %v: %s", err, errb.String())
	}
	var lr struct {
		Requests       int `json:"requests"`
		OK             int `json:"ok"`
		WarmupRequests int `json:"warmup_requests"`
	}
	if err := json.Unmarshal(out.Bytes(), &lr); err != nil {
		return figures{}, fmt.Errorf("sigil-load output: %v", err)
	}
	n := lr.Requests + lr.WarmupRequests
	if n == 0 {
		return figures{}, fmt.Errorf("sigil-load: no request")
	}
	us := func(c time.Duration) float64 { return float64(c.Microseconds()) / float64(n) }
	return figures{daemon: us(d.CPU() - d0), enclave: us(enc.CPU() - e0), ok: lr.OK, n: lr.Requests}, nil
}

// connectCost opens n connections with dial, sends Initialize on each and
// reads its answer, and closes it; it returns the CPU per connection of
// this process and of the enclave.
func connectCost(dial func(context.Context) (net.Conn, error), enc *rig.Proc, n int) (float64, float64, error) {
	init, err := enclavewire.EncodeRequest(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "rig/wip", EncryptionKeyPath: "rig/kms"}))
	if err != nil {
		return 0, 0, err
	}
	s0, e0 := selfCPU(), enc.CPU()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nc, err := dial(ctx)
		cancel()
		if err != nil {
			return 0, 0, err
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := enclavewire.WriteFrame(nc, init); err != nil {
			nc.Close()
			return 0, 0, err
		}
		f, err := enclavewire.ReadFrame(nc, enclavewire.DefaultMaxFrame)
		nc.Close()
		if err != nil {
			return 0, 0, err
		}
		if err := enclavewire.DecodeReply(f, nil); err != nil {
			return 0, 0, fmt.Errorf("Initialize: %v", err)
		}
	}
	// The enclave's CPU is read after it has seen every close.
	time.Sleep(200 * time.Millisecond)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	return per(selfCPU() - s0), per(enc.CPU() - e0), nil
}

// selfCPU is this process's user and system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// signOnce signs a forged transaction through the daemon and verifies the
// signature with crypto/ed25519 (an ed25519 key's message is hashed with
// BLAKE2b-256 first).
func signOnce(api, pkh string, pk tezos.PublicKey) error {
	msg := forgedTransaction()
	body, _ := json.Marshal(hex.EncodeToString(msg))
	resp, err := http.Post(api+"/keys/"+pkh, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sign: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return err
	}
	sig, err := tezos.ParseSignature(out.Signature)
	if err != nil {
		return err
	}
	digest := blake2b.Sum256(msg)
	if !ed25519.Verify(ed25519.PublicKey(pk.Bytes), digest[:], sig.Bytes) {
		return fmt.Errorf("signature %s does not verify", out.Signature)
	}
	return nil
}

// forgedTransaction is a Taquito-forged transaction (the generic request
// sigil-load sends).
func forgedTransaction() []byte {
	b, _ := hex.DecodeString(loadgen.GenericTransactionHex)
	return b
}
