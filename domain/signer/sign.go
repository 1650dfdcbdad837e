package signer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// SignRequest is one request to sign Message with the key PKH.
type SignRequest struct {
	PKH     string
	Message []byte
	// Version is the BLS signing version; nil means the latest (2). It is
	// ignored for other key types.
	Version *uint8
	// Authentication is the client's signature over AuthenticationData when
	// authorized keys are configured; nil when the client sent none.
	Authentication *tezos.Signature
	// User is the name of the user the transport authenticated (JWT);
	// empty when none did.
	User string
	// Source is the client's IP address, for the policy hook; empty when
	// unknown.
	Source string
}

// keyLocks serializes watermarked requests per key; different keys never
// wait on each other.
type keyLocks struct{ m sync.Map }

func (l *keyLocks) lock(pkh string) func() {
	v, _ := l.m.LoadOrStore(pkh, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Sign authenticates, classifies and checks a request against the key's
// policy and, for consensus requests, its high watermark, then signs it in
// the enclave. A consensus signature leaves only after its watermark is
// durably recorded; an identical repeat of the last consensus request gets
// the recorded signature again, or, when the mark was recorded without one
// (Signatory's), a fresh signature of the same bytes.
func (s *Service) Sign(ctx context.Context, req SignRequest) (tezos.Signature, error) {
	k, err := s.Key(req.PKH)
	if err != nil {
		return tezos.Signature{}, err
	}
	if len(req.Message) == 0 {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "empty message")
	}
	pol := s.policyFor(req.PKH)
	client, err := s.authenticate(k.PKH, pol, req)
	if err != nil {
		if errors.Is(err, errClientNotAllowed) {
			s.observePolicy(k.Address, "", ports.ViolationClient)
		}
		return tezos.Signature{}, err
	}
	if err := pol.checkUser(req.PKH, req.User); err != nil {
		if domain.KindOf(err) == domain.KindForbidden {
			s.observePolicy(k.Address, "", ports.ViolationJWTUser)
		}
		s.log.Warn("sign request refused: JWT user not allowed for this key", "pkh", req.PKH, "user", domain.Echo(req.User), "error", err.Error())
		return tezos.Signature{}, err
	}
	r, err := request.Parse(req.Message)
	if err != nil {
		return tezos.Signature{}, err
	}
	if r.BLSMode && k.PKH.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "the %s is in the tz4-only encoding (operation tag 40/41), but %s is a %v key", r.Kind, req.PKH, k.PKH.Type)
	}
	if pol == nil {
		s.observePolicy(k.Address, r.PolicyKind(), ports.ViolationNotConfigured)
		return tezos.Signature{}, domain.Errorf(domain.KindForbidden, "%s is not listed in the tezos policy section: it may not sign", req.PKH)
	}
	if violation, err := pol.check(req.PKH, r); err != nil {
		s.observePolicy(k.Address, r.PolicyKind(), violation)
		s.log.Warn("sign request refused by policy", "pkh", req.PKH, "kind", r.PolicyKind(), "ops", r.Ops, "error", err.Error())
		return tezos.Signature{}, err
	}
	// The external policy service sees only what the key's own policy
	// allows, and is asked before the watermark moves or the enclave signs.
	if h := s.opts.PolicyHook; h != nil {
		if err := h.Approve(ctx, ports.HookRequest{Message: req.Message, Source: req.Source, PKH: k.PKH, ClientKeyHash: client}); err != nil {
			s.log.Warn("sign request refused by the policy hook", "pkh", req.PKH, "kind", r.PolicyKind(), "error", err.Error())
			return tezos.Signature{}, err
		}
	}
	version := tezos.SignVersion2
	if req.Version != nil {
		version = *req.Version
	}
	if k.PKH.Type == tezos.BLS && version != tezos.SignVersion1 && version != tezos.SignVersion2 && version != tezos.SignVersionLatest {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "signing version %d is not supported for BLS keys (use 1 or 2)", version)
	}
	attrs := []any{"pkh", req.PKH, "vault", k.Vault, "kind", string(r.Kind)}
	if r.HasWatermark() {
		attrs = append(attrs, "chain_id", r.ChainID.String(), "level", r.Level, "round", r.Round)
	} else if len(r.Ops) > 0 {
		attrs = append(attrs, "ops", strings.Join(r.Ops, ","))
	}
	if pol.LogPayloads {
		attrs = append(attrs, "payload", hex.EncodeToString(req.Message))
	}

	var sig tezos.Signature
	if r.HasWatermark() {
		sig, err = s.signWatermarked(ctx, k, r, req.Message, version)
	} else {
		sig, err = s.enclaveSign(ctx, k, r, req.Message, version)
	}
	if err != nil {
		s.log.Warn("sign request failed", append(attrs, "error", err.Error())...)
		return tezos.Signature{}, err
	}
	s.log.Info("signed", attrs...)
	return sig, nil
}

// watermarkKind is the watermark a consensus request advances. An
// attestation with DAL content and the tz4 forms share their plain kind's
// watermark: a key must never sign two of them at one level and round.
func watermarkKind(r *request.Request) string { return string(r.Kind) }

func (s *Service) signWatermarked(ctx context.Context, k Key, r *request.Request, msg []byte, version uint8) (tezos.Signature, error) {
	if s.opts.Watermarks == nil {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "no watermark store configured: refusing to sign %s", r.Kind)
	}
	wk := watermark.Key{ChainID: r.ChainID.String(), PKH: k.Address, Kind: watermarkKind(r)}
	next := watermark.Mark{Level: r.Level, Round: r.Round, Digest: tezos.Digest(msg)}

	unlock := s.locks.lock(wk.PKH)
	defer unlock()
	ev := ports.WatermarkEvent{Address: k.Address, Request: wk.Kind, ChainID: wk.ChainID, Round: r.Round}
	start := time.Now()
	var wmTime time.Duration // time in the watermark store, not in the enclave
	defer func() {
		if s.observer != nil && ev.Outcome != "" {
			ev.Duration = wmTime
			s.observer.ObserveWatermark(ev)
		}
	}()
	outcome := func(err error) {
		var reason string
		switch {
		case err == nil:
			return
		case errors.Is(err, errVersionMismatch):
			ev.Outcome, reason = ports.WatermarkRejected, ports.ReasonVersionMismatch
		case domain.KindOf(err) == domain.KindConflict:
			ev.Outcome, reason = ports.WatermarkRejected, ports.ReasonNotAbove
		default:
			ev.Outcome = ports.WatermarkFailed
		}
		ev.Reason = reason
	}

	// Refuse or replay early from what this process knows, without
	// touching the enclave. Marks only rise, so this is always safe.
	rec, ok, err := s.opts.Watermarks.Check(ctx, wk)
	wmTime += time.Since(start)
	if err != nil {
		outcome(err)
		return tezos.Signature{}, err
	}
	if ok {
		d, err := watermark.Decide(wk, &rec, next)
		if err != nil {
			outcome(err)
			return tezos.Signature{}, err
		}
		if d == watermark.Resign {
			s.log.Info("identical consensus request over a mark recorded without its signature (Signatory's): signing the same bytes again", "pkh", wk.PKH, "kind", wk.Kind, "level", next.Level, "round", next.Round)
		}
		if d == watermark.Replay {
			s.log.Info("identical consensus request repeated: answering with the recorded signature", "pkh", wk.PKH, "kind", wk.Kind, "level", next.Level, "round", next.Round)
			sig, err := replay(k, wk, rec, msg, version)
			ev.Outcome = ports.WatermarkReplayed
			outcome(err)
			return sig, err
		}
	}
	sig, err := s.enclaveSign(ctx, k, r, msg, version)
	if err != nil {
		return tezos.Signature{}, err
	}
	next.Signature = sig.String()
	commitStart := time.Now()
	stored, err := s.opts.Watermarks.Commit(ctx, wk, next)
	wmTime += time.Since(commitStart)
	if err != nil {
		outcome(err)
		return tezos.Signature{}, err
	}
	if stored.Signature != next.Signature {
		sig, err := replay(k, wk, stored, msg, version)
		ev.Outcome = ports.WatermarkReplayed
		outcome(err)
		return sig, err
	}
	ev.Outcome = ports.WatermarkAccepted
	return sig, nil
}

func (s *Service) observePolicy(address, kind, violation string) {
	if s.observer != nil {
		s.observer.ObservePolicy(ports.PolicyEvent{Address: address, Request: kind, Violation: violation})
	}
}

// errVersionMismatch marks a replay refused because the signing version
// differs; errClientNotAllowed a client authenticated but not allowed to use
// the key (a policy violation rather than an authentication failure).
var (
	errVersionMismatch  = errors.New("signing version differs from the recorded signature's")
	errClientNotAllowed = errors.New("client not allowed for this key")
)

// ErrAuthentication is in the chain of every error that refuses a request
// for its (missing or wrong) client authentication.
var ErrAuthentication = errors.New("authentication failed")

// authError returns a domain error of kind k wrapping ErrAuthentication.
func authError(k domain.Kind, format string, args ...any) error {
	return &domain.Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: ErrAuthentication}
}

// replay returns the signature recorded for an identical earlier request.
// The replay identity is the whole request: the recorded signature is
// handed out only if it verifies for this message under the signing
// version asked for now (a BLS key signs the same message differently
// under versions 1 and 2, and a client must never receive a signature in a
// scheme it did not ask for).
func replay(k Key, wk watermark.Key, m watermark.Mark, msg []byte, version uint8) (tezos.Signature, error) {
	sig, err := tezos.ParseSignature(m.Signature)
	if err != nil {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "recorded signature at %s is unreadable: %w", m, err)
	}
	if k.PublicKey.Verify(msg, sig, version) == nil {
		return sig, nil
	}
	if k.PKH.Type == tezos.BLS {
		for _, v := range []uint8{tezos.SignVersion1, tezos.SignVersion2} {
			if v != version && !(version == tezos.SignVersionLatest && v == tezos.SignVersion2) && k.PublicKey.Verify(msg, sig, v) == nil {
				return tezos.Signature{}, &domain.Error{Kind: domain.KindConflict, Err: errVersionMismatch, Msg: fmt.Sprintf(
					"%s %s for %s on %s was already signed with BLS signing version %d; this identical request asks for version %d, which would be a second signature at the same level and round",
					wk.Kind, m, wk.PKH, wk.ChainID, v, version)}
			}
		}
	}
	return tezos.Signature{}, domain.Errorf(domain.KindConflict,
		"%s %s for %s on %s: the recorded signature does not verify for this request; refusing to sign again at the same level and round",
		wk.Kind, m, wk.PKH, wk.ChainID)
}

func (s *Service) enclaveSign(ctx context.Context, k Key, r *request.Request, msg []byte, version uint8) (tezos.Signature, error) {
	v := s.vaults[k.Vault]
	start := time.Now()
	sig, err := v.Enclave.Sign(ctx, k.PKH, msg, version)
	if err == nil && sig.Type != k.PKH.Type {
		err = domain.Errorf(domain.KindInternal, "enclave returned a %v signature for a %v key", sig.Type, k.PKH.Type)
	}
	if s.observer != nil {
		ev := ports.SignEvent{Vault: k.Vault, Address: k.Address, Request: string(r.Kind), Duration: time.Since(start), Err: err}
		if r.HasWatermark() {
			ev.ChainID = r.ChainID.String()
		}
		if len(r.Ops) > 0 {
			ev.Ops = map[string]int{}
			for _, op := range r.Ops {
				ev.Ops[op]++
			}
		}
		s.observer.ObserveSign(ev)
	}
	if err != nil {
		return tezos.Signature{}, fmt.Errorf("vault %q: signing with %s: %w", k.Vault, k.PKH, err)
	}
	return sig, nil
}

// authenticate enforces authorized client keys as Signatory applies them:
// with server-wide keys, a request must be signed by one of them; with the
// key's own list, by one of those; with both, by a key in both lists. No
// list means no authentication. It returns the authenticating client key's
// hash (zero when none was needed).
func (s *Service) authenticate(pkh tezos.PublicKeyHash, pol *Policy, req SignRequest) (tezos.PublicKeyHash, error) {
	server := s.opts.AuthorizedKeys
	var own []tezos.PublicKey
	if pol != nil {
		own = pol.AuthorizedKeys
	}
	if len(server) == 0 && len(own) == 0 {
		return tezos.PublicKeyHash{}, nil
	}
	if req.Authentication == nil {
		return tezos.PublicKeyHash{}, authError(domain.KindUnauthorized, "authentication required: sign the request with an authorized key and pass it as ?authentication=")
	}
	data := authData(pkh, req.Message)
	var client *tezos.PublicKey
	for _, list := range [][]tezos.PublicKey{server, own} {
		for i := range list {
			if list[i].Verify(data, *req.Authentication, tezos.SignVersion2) == nil {
				client = &list[i]
				break
			}
		}
		if client != nil {
			break
		}
	}
	if client == nil {
		return tezos.PublicKeyHash{}, authError(domain.KindForbidden, "authentication failed: the signature is not from an authorized key")
	}
	in := func(list []tezos.PublicKey) bool {
		return slices.ContainsFunc(list, func(k tezos.PublicKey) bool { return k.Equal(*client) })
	}
	ch := client.Hash()
	if len(server) > 0 && !in(server) {
		return tezos.PublicKeyHash{}, authError(domain.KindForbidden, "client %s is not in server.authorized_keys", ch)
	}
	if len(own) > 0 && !in(own) {
		return tezos.PublicKeyHash{}, &domain.Error{Kind: domain.KindForbidden, Err: errClientNotAllowed, Msg: fmt.Sprintf("client %s is not allowed to use %s (not in its authorized_keys)", ch, req.PKH)}
	}
	s.log.Debug("request authenticated", "client", ch.String(), "pkh", req.PKH)
	return ch, nil
}

// AuthorizedKeys returns the hashes of the server-wide authorized client
// keys; empty when requests need no authentication.
func (s *Service) AuthorizedKeys() []tezos.PublicKeyHash {
	out := make([]tezos.PublicKeyHash, len(s.opts.AuthorizedKeys))
	for i, k := range s.opts.AuthorizedKeys {
		out[i] = k.Hash()
	}
	return out
}

func (s *Service) policyFor(pkh string) *Policy {
	if p, ok := s.opts.Policies[pkh]; ok {
		return p
	}
	return s.opts.DefaultPolicy
}

// ProvePossession returns a BLS proof of possession for a tz4 key whose
// policy allows it.
func (s *Service) ProvePossession(ctx context.Context, pkh string) (tezos.Signature, error) {
	k, err := s.Key(pkh)
	if err != nil {
		return tezos.Signature{}, err
	}
	if k.PKH.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "proof of possession is only defined for BLS (tz4) keys, %s is %v", pkh, k.PKH.Type)
	}
	if pol := s.policyFor(pkh); pol == nil || !pol.AllowProofOfPossession {
		return tezos.Signature{}, domain.Errorf(domain.KindForbidden, "proof of possession is not allowed for %s: set allow_proof_of_possession in its policy", pkh)
	}
	v := s.vaults[k.Vault]
	sig, err := v.Enclave.ProvePossession(ctx, k.PKH)
	if err != nil {
		return tezos.Signature{}, fmt.Errorf("vault %q: proof of possession for %s: %w", k.Vault, pkh, err)
	}
	return sig, nil
}
