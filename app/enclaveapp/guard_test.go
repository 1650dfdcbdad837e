package enclaveapp

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/domain/enclave"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// TestGuardOpen: Open seats the guard the options describe in the
// enclave: an allowed block is signed, a conflicting one and a transfer
// are refused in the guard's wire form, and each refusal is logged as a
// warning naming the key, the kind and the reason, and nothing of the
// message, the blob or a signature.
func TestGuardOpen(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e, err := Open(Options{KMS: "local", KMSKeyFile: filepath.Join(t.TempDir(), "k"), Guard: GuardOptions{
		Policy: `{"key_types":{"tz1":{"allow":{"block":[]}}}}`, State: GuardStateMemory,
	}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	s := e.Domain.NewSession(enclave.Channel{})
	defer s.Close()
	if err := s.Initialize(ctx, enclaveside.Credentials{ConfidentialSpace: &enclaveside.ConfidentialSpaceCredentials{WIPProviderPath: "w", EncryptionKeyPath: "k"}}); err != nil {
		t.Fatal(err)
	}
	k, err := s.Generate(ctx, tezos.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	block := rt.Block(rt.Mainnet, 5, 0, 1)
	sig, err := s.SignWith(ctx, k.Blob, block, 0)
	if err != nil || enclavetest.Verify(k.PublicKey, block, sig, 0) != nil {
		t.Fatalf("an allowed block: %v %v", sig, err)
	}
	for _, c := range []struct {
		msg        []byte
		kind, says string
	}{
		{rt.Block(rt.Mainnet, 5, 0, 2), "conflict", "level 5"},
		{rt.Generic(1, rt.Transaction(k.PublicKey.Hash(), rt.Originated(2), 3, 0)), "forbidden", "generic"},
	} {
		logs.Reset()
		_, err := s.SignWith(ctx, k.Blob, c.msg, 0)
		if err == nil || !strings.HasPrefix(err.Error(), "guard refused: "+c.kind) {
			t.Fatalf("%s: %v", c.kind, err)
		}
		line := logs.String()
		for _, want := range []string{"level=WARN", `msg="guard refused a signature"`, "key=" + k.PublicKey.Hash().String(), "kind=" + c.kind, c.says} {
			if !strings.Contains(line, want) {
				t.Fatalf("%s: the log line %q lacks %q", c.kind, line, want)
			}
		}
		if strings.Contains(line, sig.String()) || strings.Contains(line, hex.EncodeToString(c.msg[1:])) {
			t.Fatalf("%s: the log line shows a signature or the message: %s", c.kind, line)
		}
	}
	// The stats line counts each refusal by its kind.
	got := map[string]int64{}
	for _, a := range e.StatsAttrs() {
		if strings.HasPrefix(a.Key, "guard_refused_") {
			got[a.Key] = a.Value.Int64()
		}
	}
	want := map[string]int64{"guard_refused_forbidden": 1, "guard_refused_conflict": 1, "guard_refused_unavailable": 0,
		"guard_refused_invalid": 0, "guard_refused_other": 0}
	if len(got) != len(want) {
		t.Fatalf("stats: guard counters %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("stats: %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// TestStatsWithoutGuard: an enclave without a guard has no guard counters
// in its stats line.
func TestStatsWithoutGuard(t *testing.T) {
	e, err := Open(Options{KMS: "local", KMSKeyFile: filepath.Join(t.TempDir(), "k")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, a := range e.StatsAttrs() {
		if strings.HasPrefix(a.Key, "guard_") {
			t.Fatalf("stats without a guard: %s", a.Key)
		}
	}
}
