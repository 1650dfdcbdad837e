package kmsdelay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/kms/kmsdelay"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// TestDelay: every seal and open waits the delay first, and a call whose
// context ends before the delay does returns that error without calling
// the KMS; no delay is no wrapper.
func TestDelay(t *testing.T) {
	const d = 30 * time.Millisecond
	p := kmsdelay.Wrap(passthroughstandin.KMS{}, d)
	s, err := p.ForSession(context.Background(), enclaveside.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	blob, err := s.Seal(context.Background(), []byte("k"))
	if err != nil || string(blob) != "k" {
		t.Fatalf("%q %v", blob, err)
	}
	if _, err := s.Open(context.Background(), blob); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 2*d {
		t.Fatalf("two calls took %v, want at least %v", el, 2*d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Seal(ctx, []byte("k")); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled call: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := kmsdelay.Wrap(passthroughstandin.KMS{}, 0).(passthroughstandin.KMS); !ok {
		t.Fatal("a zero delay wrapped the provider")
	}
}
