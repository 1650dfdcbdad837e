package enclaveapp

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/enclave"
)

// TestGraph: the enclave application's dependency graph is complete.
func TestGraph(t *testing.T) {
	for _, attested := range []bool{false, true} {
		if err := fx.ValidateApp(Module(Options{KMS: "passthrough", Listen: "127.0.0.1:0", LogLevel: "info", Attested: attested})); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenRefuses: a KMS or a mode that does not exist, and Cloud KMS with
// the Nitro Initialize, are refused with the flag named; every KMS driver
// name opens.
func TestOpenRefuses(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for o, want := range map[*Options]string{
		{KMS: "cloud"}:                                `invalid --kms "cloud"`,
		{KMS: "local", Platform: "aws"}:               `invalid --mode "aws"`,
		{KMS: "gcp", Platform: enclave.PlatformNitro}: "cannot run with --mode nitro",
		{KMS: "local", KMSKeyFile: t.TempDir()}:       "kms key",
		{KMS: "passthrough", PlainListen: ":0"}:       "--plain-listen is a second, plain listener of an enclave serving the attested channel: it needs --attested",
		{KMS: "passthrough", Attested: true}:          "SIGIL_ENCLAVE_CLIENT_PINS lists no client pin",
	} {
		if _, err := Open(*o, log); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", *o, err, want)
		}
	}
	for _, name := range KMSNames() {
		e, err := Open(Options{KMS: name, KMSKeyFile: filepath.Join(t.TempDir(), "k")}, log)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(KMSNames()) != len(kmsDrivers) {
		t.Fatal("KMSNames and kmsDrivers disagree")
	}
}

// TestAttestPinsWithoutAttested: client pins in the launch environment of
// an enclave started without --attested are a warning (the plain protocol
// authenticates no client), and the enclave is not attested.
func TestAttestPinsWithoutAttested(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e, err := Open(Options{KMS: "passthrough", Attest: securechannel.ServerSettings{ClientPins: "sha256:" + strings.Repeat("ab", 32)}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Domain.Attested() || e.Channel != nil {
		t.Fatal("attested without --attested")
	}
	if !strings.Contains(logs.String(), "--attested is not set") || !strings.Contains(logs.String(), "SIGIL_ENCLAVE_CLIENT_PINS") {
		t.Fatalf("no warning: %s", logs.String())
	}
}
