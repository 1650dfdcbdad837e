// Package kmsdelay slows a KMS down for load tests (sigil-enclave
// --kms-delay): it wraps an enclaveside.KMSProvider so that every seal and
// open of its sessions first sleeps a fixed delay, as a remote KMS's round
// trip would.
package kmsdelay

import (
	"context"
	"time"

	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// Wrap returns p with every Seal and Open delayed by d (p itself when d is
// not positive). The delay ends early when the call's context does.
func Wrap(p enclaveside.KMSProvider, d time.Duration) enclaveside.KMSProvider {
	if d <= 0 {
		return p
	}
	return provider{p: p, d: d}
}

type provider struct {
	p enclaveside.KMSProvider
	d time.Duration
}

func (p provider) ForSession(ctx context.Context, c enclaveside.Credentials) (enclaveside.SessionKMS, error) {
	s, err := p.p.ForSession(ctx, c)
	if err != nil {
		return nil, err
	}
	return session{s: s, d: p.d}, nil
}

type session struct {
	s enclaveside.SessionKMS
	d time.Duration
}

func (s session) wait(ctx context.Context) error {
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s session) Seal(ctx context.Context, plain []byte) ([]byte, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.s.Seal(ctx, plain)
}

func (s session) Open(ctx context.Context, blob []byte) ([]byte, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.s.Open(ctx, blob)
}

func (s session) Close() error { return s.s.Close() }
