// Package enclavecli is the command line of Sigil's enclave
// (cmd/sigil-enclave): GNU-style flags as `sigil` has (cobra and pflag:
// --listen, --kms, …, --version printing what `sigil version` prints),
// which also accepts the single-dash spellings of Go's flag package that
// earlier releases documented (-listen 127.0.0.1:2000, -kms=local), with a
// deprecation warning. It turns the flags into app/enclaveapp's Options,
// runs the fx application until SIGINT or SIGTERM, and logs the server's
// counters on SIGUSR1.
package enclavecli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/dig"
	"go.uber.org/fx"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/app/enclaveapp"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
)

// Execute runs the command with the process's arguments until SIGINT or
// SIGTERM and returns the exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintln(os.Stderr, "sigil-enclave:", err)
		return 1
	}
	return 0
}

// exitCode is a shutdown the application asked for with that code.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

const usage = `Serves the enclave-signer protocol on --listen (port 2000 in Confidential Space).

--kms gcp   Confidential Space workload: each connection's Initialize names a
            Workload Identity provider and a Cloud KMS key; the attestation token
            the launcher writes is exchanged at the Security Token Service for an
            access token, and keys are sealed with Cloud KMS Encrypt/Decrypt
            (CRC32C-checked). The --gcp-* flags are seams for tests and private
            endpoints; a workload keeps their defaults.
--kms local AES-256-GCM key file (--kms-key-file); development only.
--kms passthrough  blobs are plain keys; tests only.
--attested  serve the attested channel on --listen instead of the plain
            protocol: TLS 1.3 with an ephemeral key whose Confidential Space
            attestation token (asked of the launcher at --launcher-socket, for
            --attest-audience, --attest-token-type, renewed at half its life) the
            enclave's certificate carries; a client is admitted only if the
            SHA-256 pin of its key is listed in the environment variable
            SIGIL_ENCLAVE_CLIENT_PINS (sigil enclave-client-key prints it). The
            start fails if the list is empty or malformed, or if no token
            arrives within --attest-start-timeout. --plain-listen ADDR also
            serves the plain protocol there (migration only; off by default),
            where ImportUnencrypted and AttestationToken are refused.
--mode nitro       accept the AWS Nitro Initialize (AWS credentials, KMS key id,
            region) instead of Confidential Space's; with --kms local or
            passthrough only (tests of the nitro vault over TCP).

The single-dash spellings of earlier releases (-listen, -kms=local, …) still
work and are deprecated.`

// options are the flags' values.
type options struct {
	o       enclaveapp.Options
	mode    string
	version bool
}

func (f *options) define(fs *pflag.FlagSet) {
	o := &f.o
	fs.StringVar(&o.Listen, "listen", ":2000", "TCP address to listen on")
	fs.StringVar(&o.KMS, "kms", "local", "KMS: gcp (Cloud KMS, the Confidential Space workload), or a stand-in: local (AES-256-GCM key file) or passthrough (blobs are plain keys; tests only)")
	fs.StringVar(&o.KMSKeyFile, "kms-key-file", "./sigil-enclave-kms.key", "key file of the local KMS (created with mode 0600 if absent)")
	fs.DurationVar(&o.ReplyDelay, "reply-delay", 0, "delay before every reply (load tests)")
	fs.DurationVar(&o.KMSDelay, "kms-delay", 0, "delay around every KMS seal/open (load tests)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.mode, "mode", string(enclave.PlatformConfidentialSpace), "platform whose Initialize to accept: confidentialspace (WIP provider and KMS key paths) or nitro (AWS credentials, KMS key id, region)")
	fs.IntVar(&o.MaxConns, "max-conns", 0, "most connections open at once; at the limit the oldest connection that has not sent Initialize is closed to make room (default: the open-file limit minus 64, at most 4096)")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", enclaveserver.DefaultHandshakeTimeout, "a connection must complete Initialize within this of its accept")
	fs.DurationVar(&o.FrameTimeout, "frame-timeout", enclaveserver.DefaultFrameTimeout, "a request frame must arrive whole within this of its first byte")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", enclaveserver.DefaultWriteTimeout, "a client must take its reply within this")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "close an initialized session after this long without a request (0: never; a daemon's pooled connections idle by design and a redial costs a KMS Decrypt per key)")
	fs.StringVar(&o.GCP.TokenFile, "gcp-token-file", gcpkms.DefaultTokenFile,
		"--kms gcp: file holding the attestation token (subject token of the exchange); seam for tests")
	fs.StringVar(&o.GCP.TokenURL, "gcp-sts-url", gcpkms.DefaultTokenURL,
		"--kms gcp: Security Token Service token endpoint; seam for tests and private endpoints")
	fs.StringVar(&o.GCP.Endpoint, "gcp-kms-endpoint", "",
		"--kms gcp: Cloud KMS gRPC endpoint host:port, TLS (default Google's cloudkms.googleapis.com:443); seam for tests and private endpoints")
	fs.BoolVar(&o.GCP.Insecure, "gcp-kms-insecure", false,
		"--kms gcp: plaintext gRPC to --gcp-kms-endpoint, which must be a loopback address (test fakes only)")
	fs.BoolVar(&o.Attested, "attested", false, "serve the attested channel on --listen (TLS 1.3, the launcher's attestation token, clients pinned by "+attestation.DefaultClientPinsEnv+")")
	fs.StringVar(&o.Attest.Audience, "attest-audience", securechannel.DefaultAudience, "--attested: audience of the attestation tokens asked of the launcher (the daemon's attested_channel.audience)")
	fs.StringVar(&o.Attest.TokenType, "attest-token-type", string(adattest.TokenOIDC), "--attested: token type asked of the launcher: OIDC or PKI (the daemon's attested_channel.token_type)")
	fs.StringVar(&o.Attest.LauncherSocket, "launcher-socket", adattest.DefaultLauncherSocket, "--attested: the Confidential Space launcher's token endpoint (Unix socket); seam for tests")
	fs.DurationVar(&o.AttestStartTimeout, "attest-start-timeout", enclaveapp.DefaultAttestStartTimeout, "--attested: the start fails if no attestation token arrives within this")
	fs.StringVar(&o.PlainListen, "plain-listen", "", "--attested: also serve the plain protocol on this TCP address (migration only; ImportUnencrypted and AttestationToken refused there); default none")
	f.defineGuard(fs)
	fs.BoolVar(&f.version, "version", false, "print the version, VCS revision, build time and Go version (as `sigil version`), and exit")
}

// check validates what the flags alone can tell.
func (f *options) check(fs *pflag.FlagSet, getenv func(string) string) error {
	o := &f.o
	o.Platform = enclave.Platform(f.mode)
	// The pins come from the launch environment, which the token carries.
	o.Attest.ClientPins = securechannel.ServerSettingsFromEnv(getenv).ClientPins
	if _, err := enclaveapp.ParseLevel(o.LogLevel); err != nil {
		return err
	}
	if o.ReplyDelay < 0 || o.KMSDelay < 0 {
		return errors.New("delays must not be negative")
	}
	if o.MaxConns < 0 || o.HandshakeTimeout <= 0 || o.FrameTimeout <= 0 || o.WriteTimeout <= 0 || o.IdleTimeout < 0 {
		return errors.New("--max-conns and --idle-timeout must not be negative, and --handshake-timeout, --frame-timeout and --write-timeout must be positive")
	}
	if o.Platform != enclave.PlatformConfidentialSpace && o.Platform != enclave.PlatformNitro {
		return fmt.Errorf("invalid --mode %q (want confidentialspace or nitro)", f.mode)
	}
	if _, err := adattest.ParseTokenType(o.Attest.TokenType); err != nil || o.Attest.TokenType == "" {
		return fmt.Errorf("invalid --attest-token-type %q (want OIDC or PKI)", o.Attest.TokenType)
	}
	if len(o.Attest.Audience) == 0 || len(o.Attest.Audience) > adattest.MaxAudience {
		return fmt.Errorf("invalid --attest-audience: %d bytes (want 1 to %d)", len(o.Attest.Audience), adattest.MaxAudience)
	}
	if o.AttestStartTimeout <= 0 {
		return errors.New("--attest-start-timeout must be positive")
	}
	if !o.Attested {
		// The attested channel's flags without --attested: a command line
		// that believes it is attested and is not.
		for _, name := range attestFlags {
			if fs.Changed(name) {
				return fmt.Errorf("--%s configures the attested channel: it needs --attested", name)
			}
		}
	}
	return nil
}

// attestFlags are the flags that only mean something with --attested.
var attestFlags = []string{"attest-audience", "attest-token-type", "launcher-socket", "attest-start-timeout", "plain-listen"}

// versionText is what --version prints: the fields of `sigil version`.
func versionText() string {
	i := buildinfo.Read()
	return fmt.Sprintf("sigil-enclave %s\n%s", i.Version, i)
}

// Run runs sigil-enclave with args until ctx ends (or, with --help and
// --version, prints and returns). It prints exactly "listening on ADDR" to
// stdout once the listener is bound; logs go to stderr. The environment is
// the process's.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return RunEnv(ctx, args, os.Getenv, stdout, stderr)
}

// RunEnv is Run with the environment read through getenv
// (SIGIL_ENCLAVE_CLIENT_PINS).
func RunEnv(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var f options
	cmd := &cobra.Command{
		Use:           "sigil-enclave [flags]",
		Short:         "Sigil's enclave: the enclave-signer protocol, keys sealed by a KMS",
		Long:          usage,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.version {
				_, err := fmt.Fprint(stdout, versionText())
				return err
			}
			if err := f.check(cmd.Flags(), getenv); err != nil {
				return err
			}
			f.o.Stdout, f.o.Stderr = stdout, stderr
			f.o.StartContext = ctx // SIGTERM ends the wait for the first token
			return serve(ctx, f.o)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	f.define(cmd.Flags())
	cmd.Flags().SortFlags = false
	cmd.InitDefaultHelpFlag() // so that -help is recognized as --help
	args, warnings := normalizeArgs(cmd.Flags(), args)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "sigil-enclave: "+w)
	}
	cmd.SetArgs(args)
	return cmd.Execute()
}

// normalizeArgs rewrites the single-dash long flags of Go's flag package
// (-listen ADDR, -kms=local, -gcp-kms-insecure) into pflag's double dash,
// returning one deprecation warning per flag so spelled. Values are left
// alone (the argument after a flag that takes one, even if it starts with
// a dash: --reply-delay -1s), and so is everything after "--".
func normalizeArgs(fs *pflag.FlagSet, args []string) ([]string, []string) {
	out := make([]string, 0, len(args))
	var warnings []string
	warned := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, a)
			continue
		}
		long := strings.HasPrefix(a, "--")
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		fl := fs.Lookup(name)
		if !long && fl != nil && len(name) > 1 {
			a = "-" + a
			if !warned[name] {
				warned[name] = true
				warnings = append(warnings, fmt.Sprintf("-%s is deprecated: use --%s", name, name))
			}
		}
		out = append(out, a)
		// The next argument is this flag's value: keep it as it is.
		if fl != nil && !hasValue && fl.Value.Type() != "bool" && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out, warnings
}

// serve runs the enclave application until ctx ends or it shuts itself
// down.
func serve(ctx context.Context, o enclaveapp.Options) error {
	var (
		log *slog.Logger
		enc *enclaveapp.Enclave
	)
	a := fx.New(enclaveapp.Module(o), fx.Populate(&log, &enc), fx.NopLogger)
	if err := a.Err(); err != nil {
		return unwrapFx(err)
	}
	// SIGUSR1 logs the server's counters (connections, requests by method,
	// KMS calls, the guard's refusals and timeouts); they are logged at
	// exit too. It is caught before the start prints "listening on", so
	// that a script that asks right after that line is answered (Go drops
	// a SIGUSR1 nobody is notified of).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	startCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		return unwrapFx(err)
	}
	done := a.Wait()
	var code int
wait:
	for {
		select {
		case <-usr1:
			log.LogAttrs(ctx, slog.LevelInfo, "enclave stats", enc.StatsAttrs()...)
		case sig := <-done:
			code = sig.ExitCode
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	stopCtx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if err := a.Stop(stopCtx); err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

// unwrapFx strips fx's dependency-graph wording down to the root cause.
func unwrapFx(err error) error {
	if root := dig.RootCause(err); root != nil {
		return root
	}
	return err
}
