package signer

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// SignRequest is one request to sign Message with the key PKH.
type SignRequest struct {
	PKH     string
	Message []byte
	// Version is the BLS signing version; nil means the latest (2). It is
	// ignored for other key types.
	Version *uint8
	// Authentication is the client's signature over the request when
	// authorized keys are configured; nil when the client sent none.
	Authentication *tezos.Signature
}

// Sign signs a request with one of the service's keys.
func (s *Service) Sign(ctx context.Context, req SignRequest) (tezos.Signature, error) {
	k, err := s.Key(req.PKH)
	if err != nil {
		return tezos.Signature{}, err
	}
	if len(req.Message) == 0 {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "empty message")
	}
	version := tezos.SignVersion2
	if req.Version != nil {
		version = *req.Version
	}
	if k.PKH.Type == tezos.BLS && version != tezos.SignVersion1 && version != tezos.SignVersion2 && version != tezos.SignVersionLatest {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "signing version %d is not supported for BLS keys (use 1 or 2)", version)
	}
	v := s.vaults[k.Vault]
	start := time.Now()
	sig, err := v.Enclave.Sign(ctx, k.PKH, req.Message, version)
	if s.observer != nil {
		s.observer.ObserveSign(ports.SignEvent{Vault: k.Vault, Address: req.PKH, Request: "generic", Duration: time.Since(start), Err: err})
	}
	if err != nil {
		return tezos.Signature{}, fmt.Errorf("vault %q: signing with %s: %w", k.Vault, req.PKH, err)
	}
	if sig.Type != k.PKH.Type {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "vault %q: enclave returned a %v signature for a %v key", k.Vault, sig.Type, k.PKH.Type)
	}
	return sig, nil
}

// ProvePossession returns a BLS proof of possession for a tz4 key.
func (s *Service) ProvePossession(ctx context.Context, pkh string) (tezos.Signature, error) {
	k, err := s.Key(pkh)
	if err != nil {
		return tezos.Signature{}, err
	}
	if k.PKH.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "proof of possession is only defined for BLS (tz4) keys, %s is %v", pkh, k.PKH.Type)
	}
	v := s.vaults[k.Vault]
	sig, err := v.Enclave.ProvePossession(ctx, k.PKH)
	if err != nil {
		return tezos.Signature{}, fmt.Errorf("vault %q: proof of possession for %s: %w", k.Vault, pkh, err)
	}
	return sig, nil
}

// AuthorizedKeys returns the hashes of the client keys allowed to send sign
// requests; empty when requests need no authentication.
func (s *Service) AuthorizedKeys() []tezos.PublicKeyHash { return nil }
