package signer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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
	// Authentication is the client's signature over AuthenticationData
	// (base58, as the `authentication` query parameter carries it); empty
	// when the client sent none. It is read only when authorized keys
	// apply, as Signatory reads it.
	Authentication string
	// User is the name of the user the transport authenticated (JWT);
	// empty when none did.
	User string
	// Source is the client's IP address, for the policy hook; empty when
	// unknown.
	Source string
}

// PossessionRequest is one request for a BLS proof of possession of the
// key PKH (GET /bls_prove_possession/{pkh}).
type PossessionRequest struct {
	PKH string
	// Authentication, User and Source are as in SignRequest; the client
	// signs AuthenticationData(pkh, nil) (no message), as Signatory
	// authenticates this request.
	Authentication string
	User           string
	Source         string
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
	return s.sign(ctx, s.cur.Load(), req)
}

// sign is Sign on the snapshot st: every decision of one request reads the
// same keys and settings.
func (s *Service) sign(ctx context.Context, st *state, req SignRequest) (tezos.Signature, error) {
	if len(req.Message) == 0 {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "empty message")
	}
	k, client, err := s.authenticatedKey(st, req.PKH, req.Authentication, req.Message)
	if err != nil {
		return tezos.Signature{}, err
	}
	pol := st.policyFor(req.PKH)
	if err := pol.checkUser(req.PKH, req.User); err != nil {
		s.log.WarnContext(ctx, "sign request refused: JWT user not allowed for this key", "pkh", domain.Echo(req.PKH), "user", domain.Echo(req.User), "error", err.Error())
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
		return tezos.Signature{}, domain.Errorf(domain.KindForbidden, "%s is not listed in the tezos policy section: it may not sign", req.PKH)
	}
	if client, err = s.checkPolicy(st, k, pol, r, req, client); err != nil {
		attrs := []slog.Attr{slog.String("pkh", req.PKH), slog.String("vault", k.Vault), slog.String("kind", r.PolicyKind())}
		if len(r.Ops) > 0 {
			attrs = append(attrs, slog.String("ops", strings.Join(r.Ops, ",")))
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "sign request refused by policy", append(attrs, slog.String("error", err.Error()))...)
		return tezos.Signature{}, err
	}
	// The external policy service sees only what the key's own policy
	// allows, and is asked before the watermark moves or the enclave signs.
	if err := s.askHook(ctx, st, k, req.Message, req.Source, client); err != nil {
		s.log.WarnContext(ctx, "sign request refused by the policy hook", "pkh", req.PKH, "vault", k.Vault, "kind", r.PolicyKind(), "error", err.Error())
		return tezos.Signature{}, err
	}
	version := tezos.SignVersion2
	if req.Version != nil {
		version = *req.Version
	}
	if k.PKH.Type == tezos.BLS && version != tezos.SignVersion1 && version != tezos.SignVersion2 && version != tezos.SignVersionLatest {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "signing version %d is not supported for BLS keys (use 1 or 2)", version)
	}
	attrs := []slog.Attr{slog.String("pkh", req.PKH), slog.String("vault", k.Vault), slog.String("kind", string(r.Kind))}
	if r.HasWatermark() {
		attrs = append(attrs, slog.String("chain_id", r.ChainID.String()), slog.Int64("block_level", int64(r.Level)), slog.Int64("round", int64(r.Round)))
	} else if len(r.Ops) > 0 {
		attrs = append(attrs, slog.String("ops", strings.Join(r.Ops, ",")))
	}
	if pol.LogPayloads {
		attrs = append(attrs, slog.String("payload", hex.EncodeToString(req.Message)))
	}

	var sig tezos.Signature
	start := time.Now()
	if r.HasWatermark() {
		sig, err = s.signWatermarked(ctx, k, r, req.Message, version)
	} else {
		s.observeWatermark(ports.WatermarkEvent{Address: k.Address, Request: r.PolicyKind(), Outcome: ports.WatermarkNone})
		sig, err = s.enclaveSign(ctx, k, req.Message, version)
	}
	s.observeSign(k, r, time.Since(start), err)
	if err != nil {
		if errors.Is(err, ports.ErrEnclaveBadSignature) {
			// An enclave fault: nothing was answered or recorded, and the
			// connection that carried it is gone.
			s.log.LogAttrs(ctx, slog.LevelError, "enclave returned an invalid signature: refused, no watermark recorded", append(attrs, slog.String("error", err.Error()))...)
		} else {
			s.log.LogAttrs(ctx, slog.LevelWarn, "sign request failed", append(attrs, slog.String("error", err.Error()))...)
		}
		return tezos.Signature{}, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "signed", attrs...)
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
	ev := ports.WatermarkEvent{Address: k.Address, Request: r.PolicyKind(), ChainID: wk.ChainID}
	start := time.Now()
	var wmTime time.Duration // time in the watermark store, not in the enclave
	defer func() {
		ev.Duration = wmTime
		s.observeWatermark(ev)
	}()
	outcome := func(err error) {
		switch {
		case err == nil:
		case domain.KindOf(err) == domain.KindConflict:
			ev.Outcome = ports.WatermarkRejected
		default:
			ev.Outcome = ports.WatermarkFailed
		}
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
			s.log.InfoContext(ctx, "identical consensus request over a mark recorded without its signature (Signatory's): signing the same bytes again", "pkh", wk.PKH, "kind", wk.Kind, "block_level", int64(next.Level), "round", int64(next.Round))
		}
		if d == watermark.Replay {
			s.log.InfoContext(ctx, "identical consensus request repeated: answering with the recorded signature", "pkh", wk.PKH, "kind", wk.Kind, "block_level", int64(next.Level), "round", int64(next.Round))
			sig, err := replay(k, wk, rec, msg, version)
			ev.Outcome = ports.WatermarkReplayed
			outcome(err)
			return sig, err
		}
	}
	// The request passed the watermark check: it counts as accepted even
	// if the enclave then fails (as Signatory counts it), unless recording
	// its mark fails or is refused.
	ev.Outcome = ports.WatermarkAccepted
	sig, err := s.enclaveSign(ctx, k, msg, version)
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

func (s *Service) observePolicy(address, violation string) {
	if s.observer != nil {
		s.observer.ObservePolicy(ports.PolicyEvent{Address: address, Violation: violation})
	}
}

func (s *Service) observeWatermark(ev ports.WatermarkEvent) {
	if s.observer != nil && ev.Outcome != "" {
		s.observer.ObserveWatermark(ev)
	}
}

// observeSign reports the signing step of one request, as Signatory's
// SignInterceptor sees it: the vault's display name, the request kind,
// the chain and round of a consensus request, the operations of a
// generic one, and the error (a watermark refusal included).
func (s *Service) observeSign(k Key, r *request.Request, d time.Duration, err error) {
	if s.observer == nil {
		return
	}
	ev := ports.SignEvent{Vault: s.vaults[k.Vault].display(), Address: k.Address, Request: r.PolicyKind(), Duration: d, Err: err}
	if r.HasWatermark() {
		ev.Consensus, ev.ChainID, ev.Round = true, r.ChainID.String(), r.Round
	}
	if len(r.Ops) > 0 {
		ev.Ops = make(map[string]int, len(r.Ops))
		for _, op := range r.Ops {
			ev.Ops[op]++
		}
	}
	s.observer.ObserveSign(ev)
}

// ErrAuthentication is in the chain of every error that refuses a request
// for its (missing, unreadable or wrong) client authentication by the
// server-wide authorized keys (Signatory's authentication failures).
var ErrAuthentication = errors.New("authentication failed")

// authError returns a domain error of kind k wrapping ErrAuthentication.
func authError(k domain.Kind, format string, args ...any) error {
	return &domain.Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: ErrAuthentication}
}

// replay returns the signature recorded for an identical earlier request
// (watermark.ReplaySignature, with the key's public key).
func replay(k Key, wk watermark.Key, m watermark.Mark, msg []byte, version uint8) (tezos.Signature, error) {
	return watermark.ReplaySignature(k.PublicKey, wk, m, msg, version)
}

func (s *Service) enclaveSign(ctx context.Context, k Key, msg []byte, version uint8) (tezos.Signature, error) {
	v := s.vaults[k.Vault]
	sig, err := v.Enclave.Sign(ctx, k.PKH, msg, version)
	if err == nil && sig.Type != k.PKH.Type {
		err = domain.Errorf(domain.KindInternal, "enclave returned a %v signature for a %v key", sig.Type, k.PKH.Type)
	}
	if err != nil {
		return tezos.Signature{}, fmt.Errorf("vault %q: signing with %s: %w", k.Vault, k.PKH, err)
	}
	return sig, nil
}

// authenticatedKey returns the key with address pkh, authenticating the
// client first when server-wide authorized keys are configured (as
// Signatory does, before anything else: an unauthenticated client learns
// nothing about which keys exist). It returns the authenticating client
// key's hash (zero when none was needed).
func (s *Service) authenticatedKey(st *state, pkh, auth string, msg []byte) (Key, tezos.PublicKeyHash, error) {
	k, kerr := s.keyIn(st, pkh)
	var client tezos.PublicKeyHash
	if len(st.set.AuthorizedKeys) > 0 {
		h := k.PKH
		if kerr != nil {
			var err error
			if h, err = tezos.ParsePublicKeyHash(pkh); err != nil {
				return Key{}, client, domain.Wrap(domain.KindInvalid, err)
			}
		}
		var err error
		if client, err = s.authenticateServer(st, h, auth, msg); err != nil {
			return Key{}, client, err
		}
	}
	return k, client, kerr
}

// authenticateServer checks the client's signature against the
// server-wide authorized keys (Signatory's server.authorized_keys): missing
// is 401, unreadable 400, from none of them 403, each wrapping
// ErrAuthentication. It returns the authenticating key's hash.
func (s *Service) authenticateServer(st *state, pkh tezos.PublicKeyHash, auth string, msg []byte) (tezos.PublicKeyHash, error) {
	pk, err := verifyClient(st.set.AuthorizedKeys, pkh, auth, msg, authError)
	if err != nil {
		return tezos.PublicKeyHash{}, err
	}
	h := pk.Hash()
	s.log.Debug("request authenticated", "client", h.String(), "pkh", pkh.String())
	return h, nil
}

// verifyClient returns the key of list that signed AuthenticationData(pkh,
// msg) as auth; errors are made by fail (their kind: missing
// authentication is KindUnauthorized, an unreadable signature
// KindInvalid, one from no key of the list KindForbidden).
func verifyClient(list []tezos.PublicKey, pkh tezos.PublicKeyHash, auth string, msg []byte, fail func(domain.Kind, string, ...any) error) (tezos.PublicKey, error) {
	if auth == "" {
		return tezos.PublicKey{}, fail(domain.KindUnauthorized, "authentication required: sign the request with an authorized key and pass it as ?authentication=")
	}
	sig, err := tezos.ParseSignature(auth)
	if err != nil {
		return tezos.PublicKey{}, fail(domain.KindInvalid, "authentication: %v", err)
	}
	data := authData(pkh, msg)
	for _, k := range list {
		if k.Verify(data, sig, tezos.SignVersion2) == nil {
			return k, nil
		}
	}
	return tezos.PublicKey{}, fail(domain.KindForbidden, "authentication failed: the signature is not from an authorized key")
}

// authorizeClient applies the key's own authorized_keys, as Signatory's
// matchFilter does: with server-wide keys the client (authenticated by
// them) must also be in the key's list. Without server-wide keys Signatory
// refuses every request to such a key; Sigil lets the key's own list
// authenticate instead. Refusals are the policy violation
// "authentication".
func (s *Service) authorizeClient(st *state, k Key, pol *Policy, auth string, msg []byte, client tezos.PublicKeyHash) (tezos.PublicKeyHash, error) {
	if len(pol.AuthorizedKeys) == 0 {
		return client, nil
	}
	if len(st.set.AuthorizedKeys) > 0 {
		if !slices.ContainsFunc(pol.AuthorizedKeys, func(pk tezos.PublicKey) bool { return pk.Hash() == client }) {
			return client, domain.Errorf(domain.KindForbidden, "client %s is not allowed to use %s (not in its authorized_keys)", client, k.Address)
		}
		return client, nil
	}
	pk, err := verifyClient(pol.AuthorizedKeys, k.PKH, auth, msg, domain.Errorf)
	if err != nil {
		return client, err
	}
	return pk.Hash(), nil
}

// AuthorizedKeys returns the hashes of the server-wide authorized client
// keys; empty when requests need no authentication.
func (s *Service) AuthorizedKeys() []tezos.PublicKeyHash { return s.Snapshot().AuthorizedKeys() }

func (s *Service) policyFor(pkh string) *Policy { return s.cur.Load().policyFor(pkh) }

// ProvePossession returns a BLS proof of possession for a tz4 key whose
// policy allows it, checked as Signatory checks it: the client
// authenticated by the server-wide authorized keys (over the key hash
// alone), the key listed, its jwt_users, and the policy hook. The key's own
// authorized_keys do not apply (Signatory's matchFilter, which applies
// them, is not called for a proof of possession).
func (s *Service) ProvePossession(ctx context.Context, req PossessionRequest) (tezos.Signature, error) {
	return s.provePossession(ctx, s.cur.Load(), req)
}

func (s *Service) provePossession(ctx context.Context, st *state, req PossessionRequest) (tezos.Signature, error) {
	k, client, err := s.authenticatedKey(st, req.PKH, req.Authentication, nil)
	if err != nil {
		return tezos.Signature{}, err
	}
	pol := st.policyFor(req.PKH)
	if pol == nil {
		return tezos.Signature{}, domain.Errorf(domain.KindForbidden, "%s is not listed in the tezos policy section: no proof of possession", req.PKH)
	}
	if err := pol.checkUser(req.PKH, req.User); err != nil {
		return tezos.Signature{}, err
	}
	if k.PKH.Type != tezos.BLS {
		return tezos.Signature{}, domain.Errorf(domain.KindInvalid, "proof of possession is only defined for BLS (tz4) keys, %s is %v", req.PKH, k.PKH.Type)
	}
	if !pol.AllowProofOfPossession {
		return tezos.Signature{}, domain.Errorf(domain.KindForbidden, "proof of possession is not allowed for %s: set allow_proof_of_possession in its policy", req.PKH)
	}
	if err := s.askHook(ctx, st, k, nil, req.Source, client); err != nil {
		s.log.WarnContext(ctx, "proof of possession refused by the policy hook", "pkh", req.PKH, "vault", k.Vault, "error", err.Error())
		return tezos.Signature{}, err
	}
	v := s.vaults[k.Vault]
	sig, err := v.Enclave.ProvePossession(ctx, k.PKH)
	if err != nil {
		err = fmt.Errorf("vault %q: proof of possession for %s: %w", k.Vault, req.PKH, err)
		if errors.Is(err, ports.ErrEnclaveBadSignature) {
			s.log.ErrorContext(ctx, "enclave returned an invalid signature: refused", "pkh", req.PKH, "vault", k.Vault, "kind", "proof_of_possession", "error", err.Error())
		} else {
			s.log.WarnContext(ctx, "proof of possession failed", "pkh", req.PKH, "vault", k.Vault, "error", err.Error())
		}
		return tezos.Signature{}, err
	}
	s.log.InfoContext(ctx, "proof of possession", "pkh", req.PKH, "vault", k.Vault)
	return sig, nil
}

// askHook asks the policy hook, when one is configured, to approve a
// request (msg is nil for a proof of possession); a refusal or a failure
// is the policy violation "policy_hook", as Signatory counts it.
func (s *Service) askHook(ctx context.Context, st *state, k Key, msg []byte, source string, client tezos.PublicKeyHash) error {
	h := st.set.PolicyHook
	if h == nil {
		return nil
	}
	if err := h.Approve(ctx, ports.HookRequest{Message: msg, Source: source, PKH: k.PKH, ClientKeyHash: client}); err != nil {
		s.observePolicy(k.Address, ports.ViolationPolicyHook)
		return err
	}
	return nil
}
