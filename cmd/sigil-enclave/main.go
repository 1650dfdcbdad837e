// Command sigil-enclave runs Sigil's Confidential Space enclave: a TCP
// server of the enclave-signer protocol with real key generation and
// signing. With --kms gcp it is the production workload: keys are sealed
// with Cloud KMS under the key each connection's Initialize names,
// authenticated by the Confidential Space attestation token through the
// Workload Identity provider Initialize names (blobs interchangeable with
// ECAD Labs' enclave-signer). With the stand-ins (--kms local, an AES-256-GCM
// key file; --kms passthrough, blobs are plain keys) it is for development
// and tests only, and offers none of an enclave's isolation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/kmsdelay"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sigil-enclave:", err)
		os.Exit(1)
	}
}

// run starts the enclave and serves until ctx is done. It prints exactly
// "listening on ADDR" to stdout once the listener is bound.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigil-enclave", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":2000", "TCP address to listen on")
	kmsKind := fs.String("kms", "local", "KMS: gcp (Cloud KMS, the Confidential Space workload), or a stand-in: local (AES-256-GCM key file) or passthrough (blobs are plain keys; tests only)")
	keyFile := fs.String("kms-key-file", "./sigil-enclave-kms.key", "key file of the local KMS (created with mode 0600 if absent)")
	replyDelay := fs.Duration("reply-delay", 0, "delay before every reply (load tests)")
	kmsDelay := fs.Duration("kms-delay", 0, "delay around every KMS seal/open (load tests)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	mode := fs.String("mode", string(enclave.PlatformConfidentialSpace), "platform whose Initialize to accept: confidentialspace (WIP provider and KMS key paths) or nitro (AWS credentials, KMS key id, region)")
	maxConns := fs.Int("max-conns", 0, "most connections open at once; at the limit the oldest connection that has not sent Initialize is closed to make room (default: the open-file limit minus 64, at most 4096)")
	handshakeTimeout := fs.Duration("handshake-timeout", enclaveserver.DefaultHandshakeTimeout, "a connection must complete Initialize within this of its accept")
	frameTimeout := fs.Duration("frame-timeout", enclaveserver.DefaultFrameTimeout, "a request frame must arrive whole within this of its first byte")
	writeTimeout := fs.Duration("write-timeout", enclaveserver.DefaultWriteTimeout, "a client must take its reply within this")
	idleTimeout := fs.Duration("idle-timeout", 0, "close an initialized session after this long without a request (0: never; a daemon's pooled connections idle by design and a redial costs a KMS Decrypt per key)")
	gcp := addGCPFlags(fs)
	version := fs.Bool("version", false, "print the version, VCS revision, build time and Go version, and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: sigil-enclave [flags]

Serves the enclave-signer protocol on --listen (port 2000 in Confidential Space).

--kms gcp   Confidential Space workload: each connection's Initialize names a
            Workload Identity provider and a Cloud KMS key; the attestation token
            the launcher writes is exchanged at the Security Token Service for an
            access token, and keys are sealed with Cloud KMS Encrypt/Decrypt
            (CRC32C-checked). The --gcp-* flags are seams for tests and private
            endpoints; a workload keeps their defaults.
--kms local AES-256-GCM key file (--kms-key-file); development only.
--kms passthrough  blobs are plain keys; tests only.
--mode nitro       accept the AWS Nitro Initialize (AWS credentials, KMS key id,
            region) instead of Confidential Space's; with --kms local or
            passthrough only (tests of the nitro vault over TCP).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *version {
		i := buildinfo.Read()
		fmt.Fprintf(stdout, "sigil-enclave %s\n%s", i.Version, i)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q (want debug, info, warn or error)", *logLevel)
	}
	if *replyDelay < 0 || *kmsDelay < 0 {
		return errors.New("delays must not be negative")
	}
	if *maxConns < 0 || *handshakeTimeout <= 0 || *frameTimeout <= 0 || *writeTimeout <= 0 || *idleTimeout < 0 {
		return errors.New("--max-conns and --idle-timeout must not be negative, and --handshake-timeout, --frame-timeout and --write-timeout must be positive")
	}
	if *mode != string(enclave.PlatformConfidentialSpace) && *mode != string(enclave.PlatformNitro) {
		return fmt.Errorf("invalid --mode %q (want confidentialspace or nitro)", *mode)
	}
	log := slog.New(logging.New(stderr, false, level))

	var kms enclaveside.KMSProvider
	if *mode == string(enclave.PlatformNitro) && *kmsKind == "gcp" {
		return errors.New("--kms gcp seals with Cloud KMS and needs the Confidential Space Initialize: it cannot run with --mode nitro")
	}
	switch *kmsKind {
	case "gcp":
		p, err := gcp.provider(log)
		if err != nil {
			return err
		}
		defer p.Close()
		kms = p
	case "local":
		k, err := localstandin.New(*keyFile)
		if err != nil {
			return err
		}
		kms = k
	case "passthrough":
		log.Warn("passthrough KMS: sealed blobs hold plain private keys; never use real keys")
		kms = passthroughstandin.KMS{}
	default:
		return fmt.Errorf("invalid --kms %q (want gcp, local or passthrough)", *kmsKind)
	}

	dom, err := enclave.New(enclave.Config{Platform: enclave.Platform(*mode), KMS: kmsdelay.Wrap(kms, *kmsDelay), Keys: enclavewire.KeyCodec{}})
	if err != nil {
		return err
	}
	srv, err := enclaveserver.New(enclaveserver.Options{
		Enclave: dom, ReplyDelay: *replyDelay, Logger: log,
		MaxConns: *maxConns, HandshakeTimeout: *handshakeTimeout, FrameTimeout: *frameTimeout,
		WriteTimeout: *writeTimeout, IdleTimeout: *idleTimeout,
	})
	if err != nil {
		return err
	}
	// SIGUSR1 logs the server's counters (connections, requests by method,
	// KMS calls, the guard's refusals and timeouts); they are logged at
	// exit too.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-usr1:
				log.LogAttrs(ctx, slog.LevelInfo, "enclave stats", srv.Stats().LogAttrs()...)
			case <-ctx.Done():
				return
			}
		}
	}()
	err = srv.ListenAndServe(ctx, *listen, func(a net.Addr) {
		fmt.Fprintf(stdout, "listening on %s\n", a)
		o := srv.Options()
		log.Info("enclave started", "addr", a.String(), "kms", *kmsKind, "mode", *mode,
			"reply_delay", replyDelay.String(), "kms_delay", kmsDelay.String(), "max_conns", o.MaxConns,
			"handshake_timeout", o.HandshakeTimeout.String(), "frame_timeout", o.FrameTimeout.String(),
			"write_timeout", o.WriteTimeout.String(), "idle_timeout", o.IdleTimeout.String())
	})
	if err != nil {
		return err
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "enclave stopped", srv.Stats().LogAttrs()...)
	return nil
}
