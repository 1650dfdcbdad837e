package enclavecli

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/enclavewire/wiretest"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
)

// env is a launch environment for RunEnv.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// attestWorld is a fake launcher and issuer and a daemon key pinned in the
// launch environment.
type attestWorld struct {
	launcher *attestationtest.Launcher
	client   *securechannel.Client
	pins     string
}

func newAttestWorld(t *testing.T) *attestWorld {
	t.Helper()
	dir := t.TempDir()
	iss := attestationtest.NewIssuer(t)
	key, err := securechannel.GenerateClientKey(filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	ca := filepath.Join(dir, "issuer-ca.pem")
	require.NoError(t, os.WriteFile(ca, iss.CAPEM(), 0o644))
	w := &attestWorld{pins: key.Pin.String()}
	w.launcher = attestationtest.NewLauncher(t, iss, attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: w.pins},
	})
	w.client, err = securechannel.ClientSettings{
		ClientKeyFile: filepath.Join(dir, "client.key"),
		ImageDigests:  []string{attestationtest.Digest},
		Issuer:        iss.URL,
		IssuerCAFile:  ca,
	}.Client(nil)
	require.NoError(t, err)
	return w
}

// TestAttestFlagsNeedAttested: the attested channel's flags without
// --attested are refused, naming the flag; a bad token type or audience
// is refused, naming the flag.
func TestAttestFlagsNeedAttested(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--launcher-socket", "/tmp/x.sock"}, "--launcher-socket configures the attested channel: it needs --attested"},
		{[]string{"--plain-listen", "127.0.0.1:0"}, "--plain-listen configures the attested channel: it needs --attested"},
		{[]string{"--attest-audience", "a"}, "--attest-audience configures the attested channel"},
		{[]string{"-attest-token-type", "PKI"}, "--attest-token-type configures the attested channel"},
		{[]string{"--attest-start-timeout", "1s"}, "--attest-start-timeout configures the attested channel"},
		{[]string{"--attested", "--attest-token-type", "JWT"}, `invalid --attest-token-type "JWT" (want OIDC or PKI)`},
		{[]string{"--attested", "--attest-audience", ""}, "invalid --attest-audience: 0 bytes"},
		{[]string{"--attested", "--attest-audience", strings.Repeat("a", 513)}, "invalid --attest-audience: 513 bytes"},
		{[]string{"--attested", "--attest-start-timeout", "0s"}, "--attest-start-timeout must be positive"},
	} {
		err := RunEnv(context.Background(), append(c.args, "--listen", "127.0.0.1:0", "--kms-key-file", key), env(nil), io.Discard, io.Discard)
		require.ErrorContains(t, err, c.want, "%q", c.args)
	}
}

// TestAttestStartFails: --attested without client pins, with a malformed
// list, or with a launcher that gives no token within
// --attest-start-timeout does not start, and the error names the cause.
func TestAttestStartFails(t *testing.T) {
	w := newAttestWorld(t)
	w.launcher.SetFailing(true)
	key := filepath.Join(t.TempDir(), "k")
	base := []string{"--attested", "--listen", "127.0.0.1:0", "--kms", "passthrough", "--kms-key-file", key,
		"--launcher-socket", w.launcher.Socket, "--attest-start-timeout", "400ms"}
	for _, c := range []struct {
		pins string
		want string
	}{
		{"", "SIGIL_ENCLAVE_CLIENT_PINS lists no client pin"},
		{"sha256:nothex", "SIGIL_ENCLAVE_CLIENT_PINS"},
		{w.pins, "no attestation token from the launcher at " + w.launcher.Socket + " within 400ms (--attest-start-timeout)"},
	} {
		start := time.Now()
		err := RunEnv(context.Background(), base, env(map[string]string{attestation.DefaultClientPinsEnv: c.pins}), io.Discard, io.Discard)
		require.ErrorContains(t, err, c.want, "pins %q", c.pins)
		require.Less(t, time.Since(start), 30*time.Second)
	}
	// The launcher's own answer is in the error.
	err := RunEnv(context.Background(), base, env(map[string]string{attestation.DefaultClientPinsEnv: w.pins}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "503")
	// A stop (SIGTERM) during the wait ends it, long before the bound.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	err = RunEnv(ctx, append(base, "--attest-start-timeout", "1m"), env(map[string]string{attestation.DefaultClientPinsEnv: w.pins}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "stopped while waiting for the first attestation token")
	require.Less(t, time.Since(start), 20*time.Second)
	// A socket where nothing listens.
	err = RunEnv(context.Background(), append(base, "--launcher-socket", filepath.Join(t.TempDir(), "none.sock")),
		env(map[string]string{attestation.DefaultClientPinsEnv: w.pins}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "none.sock")
}

// TestAttestRunServes: --attested serves the attested channel on --listen
// (a pinned client gets the token and signs) and, with --plain-listen, the
// plain protocol there, which refuses ImportUnencrypted and
// AttestationToken with the domain's errors.
func TestAttestRunServes(t *testing.T) {
	w := newAttestWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- RunEnv(ctx, []string{"--attested", "--listen", "127.0.0.1:0", "--plain-listen", "127.0.0.1:0", "--kms", "passthrough",
			"--launcher-socket", w.launcher.Socket, "--log-level", "debug"},
			env(map[string]string{attestation.DefaultClientPinsEnv: w.pins}), pw, &stderr)
		pw.Close()
	}()
	r := bufio.NewReader(pr)
	line, err := r.ReadString('\n')
	require.NoError(t, err, stderr.String())
	require.True(t, strings.HasPrefix(line, "listening on 127.0.0.1:"), line)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "plain listening on 127.0.0.1:"), line)
	plainAddr := strings.TrimSpace(strings.TrimPrefix(line, "plain listening on "))
	go io.Copy(io.Discard, pr)

	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := w.client.Dial(dctx, "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Admitted(dctx))
	call := func(req *enclavewire.Request, out any) error {
		b, err := enclavewire.EncodeRequest(req)
		require.NoError(t, err)
		require.NoError(t, enclavewire.WriteFrame(conn, b))
		p, err := enclavewire.ReadFrame(conn, 0)
		require.NoError(t, err)
		return enclavewire.DecodeReply(p, out)
	}
	creds := enclavewire.Credentials{WIPProviderPath: "w", EncryptionKeyPath: "k"}
	require.NoError(t, call(enclavewire.NewInitialize(creds), nil))
	var gi enclavewire.GenerateAndImportResult
	require.NoError(t, call(enclavewire.NewGenerateAndImport(enclavewire.KeyEd25519), &gi))
	var sig enclavewire.Tagged
	require.NoError(t, call(enclavewire.NewSign(gi.Handle, []byte("\x03op"), 2), &sig))

	plain := wiretest.Dial(t, plainAddr)
	require.NoError(t, plain.Call(enclavewire.NewInitialize(creds), nil))
	var tok enclavewire.AttestationTokenResult
	require.EqualError(t, plain.Call(enclavewire.NewAttestationToken(), &tok), enclave.ErrPlainChannel.Error())
	sk := enclavewire.PrivateKey{Ed25519: make([]byte, 32)}
	sk.Ed25519[0] = 1
	require.EqualError(t, plain.Call(enclavewire.NewImportUnencrypted(&sk), nil), enclave.ErrPlainImport.Error())

	require.Contains(t, stderr.String(), "attested=true")
	require.Contains(t, stderr.String(), "client_pins="+w.pins)
	require.Contains(t, stderr.String(), "serving the plain protocol too")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestStatsRightAfterListening: a SIGUSR1 sent as soon as "listening on"
// is printed is answered with the counters (the signal is caught before the
// line is printed; Go drops a SIGUSR1 nobody is notified of).
func TestStatsRightAfterListening(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"--listen", "127.0.0.1:0", "--kms", "passthrough"}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "listening on"), line)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	go io.Copy(io.Discard, pr)
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), `msg="enclave stats"`) }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}
