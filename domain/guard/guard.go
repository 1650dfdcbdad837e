// Package guard is the enclave's guard: the last check before a signature
// leaves the enclave, independent of the daemon that asked for it. For each
// request it classifies the exact message the enclave is about to sign
// (domain/request, the daemon's own classification), applies the policy of
// the key or of its key type (domain/policy, the daemon's own decision, plus
// an optional list of transaction destinations), and, for blocks,
// preattestations and attestations, the high watermark of (chain, key,
// kind) with the daemon's semantics (domain/watermark.Decide: an identical
// retry gets the recorded signature, a conflicting request at or below the
// mark is refused, Signatory's unsigned marks are enforced as the daemon
// enforces them). It signs only once the request passed, through a callback
// that produces the signature inside the enclave, and lets a consensus
// signature go only after its mark is durably recorded in its state
// (ports.GuardState, a conditional write): when the state reports another
// signature for the identical message (another enclave recorded it first),
// that one is returned; when recording fails in any way, no signature
// leaves. Refusals are *domain.Error values of kind forbidden, conflict,
// unavailable or invalid, with ErrRefused in their chain and a text
// starting with "guard: "; WireMessage and FromWire carry them to the
// daemon. The policy's text format is ParseRules'. The package is pure: no
// I/O but through the state port and the callback.
package guard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultTimeout bounds, by default, the guard's work on its state for one
// request (waiting for the key, reading and recording the mark). It is
// below the daemon's default enclave request timeout (10 s), so that a
// daemon learns that the guard's state is unavailable rather than seeing
// its request time out.
const DefaultTimeout = 5 * time.Second

// Options tune a Guard.
type Options struct {
	// Timeout bounds the state's work for one request; 0 means
	// DefaultTimeout. The caller's context bounds it too.
	Timeout time.Duration
}

// Guard decides, signs through a callback, and records. It is safe for
// concurrent use; requests for one key are serialized (different keys never
// wait on each other).
type Guard struct {
	rules   *Rules
	state   ports.GuardState
	timeout time.Duration
	locks   keyLocks
}

// New returns a guard enforcing rules, with its marks in state.
func New(rules *Rules, state ports.GuardState, opts Options) (*Guard, error) {
	if rules == nil || (len(rules.Keys) == 0 && len(rules.Types) == 0) {
		return nil, errors.New("guard: no rules: the enclave would sign nothing")
	}
	if state == nil {
		return nil, errors.New("guard: no state to record its watermarks in")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("guard: negative timeout %v", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Guard{rules: rules, state: state, timeout: opts.Timeout, locks: keyLocks{m: map[string]*keyLock{}}}, nil
}

// Rules returns the rules the guard enforces.
func (g *Guard) Rules() *Rules { return g.rules }

// Request is one signing request as the enclave received it.
type Request struct {
	// Key is the public key of the key asked to sign, as the enclave
	// derived it from the private key it holds.
	Key tezos.PublicKey
	// Message is the exact message to be signed.
	Message []byte
	// Version is the BLS signing version asked for (tezos.SignVersion1,
	// SignVersion2 or SignVersionLatest); ignored for other key types.
	Version uint8
}

// SignFunc produces, inside the enclave, the signature of the request's
// message with its key and version.
type SignFunc func() (tezos.Signature, error)

// Outcome says how a signature that left was obtained.
type Outcome string

// Outcomes.
const (
	// Signed: a request without a watermark (generic, pack), signed.
	Signed Outcome = "signed"
	// Recorded: a consensus request, signed and its mark recorded (or, for
	// the identical repeat of a mark recorded without its signature,
	// signed again with the mark left as it is).
	Recorded Outcome = "recorded"
	// Replayed: the identical repeat of a recorded request, answered with
	// the recorded signature (this enclave's, or another's that recorded
	// it first); nothing was signed, or what was signed did not leave.
	Replayed Outcome = "replayed"
)

// Result is what the guard lets leave the enclave.
type Result struct {
	Signature tezos.Signature
	Outcome   Outcome
	// Kind is the request's kind as the policy names it (block,
	// attestation, attestation_with_dal, generic, pack, …).
	Kind string
	// Rule names the rule that allowed it (keys.tz1…, key_types.tz4).
	Rule string
}

// Sign decides on req and, when the guard allows it, calls sign and returns
// the signature that may leave the enclave (see the package comment). An
// error either is a refusal (Refused reports it; nothing was signed, or what
// was signed must not leave) or comes from sign unchanged.
func (g *Guard) Sign(ctx context.Context, req Request, sign SignFunc) (Result, error) {
	pkh := req.Key.Hash()
	addr := pkh.String()
	if addr == "" {
		return Result{}, refusal(domain.KindInvalid, nil, "invalid key type %v", req.Key.Type)
	}
	r, err := request.Parse(req.Message)
	if err != nil {
		return Result{}, refusal(domain.KindInvalid, err, "%v", err)
	}
	if r.BLSMode && pkh.Type != tezos.BLS {
		return Result{}, refusal(domain.KindInvalid, nil, "the %s is in the tz4-only encoding (operation tag 40/41), but %s is a %v key", r.Kind, addr, pkh.Type)
	}
	res := Result{Kind: r.PolicyKind()}
	rule, where := g.rules.For(pkh)
	if rule == nil {
		return Result{}, refusal(domain.KindForbidden, nil, "%s has no rule in the enclave's guard policy (no entry under keys, none for %s under key_types): it may not sign",
			addr, pkh.Type.AddressPrefix())
	}
	res.Rule = where
	if err := rule.check(r, addr, where); err != nil {
		return Result{}, err
	}
	version := req.Version
	if pkh.Type == tezos.BLS && version != tezos.SignVersion1 && version != tezos.SignVersion2 && version != tezos.SignVersionLatest {
		return Result{}, refusal(domain.KindInvalid, nil, "signing version %d is not supported for BLS keys (use 1 or 2)", version)
	}
	if !r.HasWatermark() {
		sig, err := g.call(sign, req.Key)
		if err != nil {
			return Result{}, err
		}
		res.Signature, res.Outcome = sig, Signed
		return res, nil
	}
	return g.signWatermarked(ctx, req, r, addr, sign, res)
}

// call runs sign and checks the signature's type.
func (g *Guard) call(sign SignFunc, pk tezos.PublicKey) (tezos.Signature, error) {
	sig, err := sign()
	if err != nil {
		return tezos.Signature{}, err
	}
	if sig.Type != pk.Type {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "guard: the enclave produced a %v signature for a %v key", sig.Type, pk.Type)
	}
	return sig, nil
}

func (g *Guard) signWatermarked(ctx context.Context, req Request, r *request.Request, addr string, sign SignFunc, res Result) (Result, error) {
	wk := watermark.Key{ChainID: r.ChainID.String(), PKH: addr, Kind: string(r.Kind)}
	next := watermark.Mark{Level: r.Level, Round: r.Round, Digest: tezos.Digest(req.Message)}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	unlock, err := g.locks.lock(ctx, addr)
	if err != nil {
		return Result{}, refusal(domain.KindUnavailable, err, "%s: waiting for the key's previous request: %v", wk, err)
	}
	defer unlock()

	// Refuse or replay early from what this process knows (marks only
	// rise), without signing.
	rec, ok, err := g.state.Check(ctx, wk)
	if err != nil {
		return Result{}, unavailable(wk, "reading its mark", err)
	}
	if ok {
		d, err := watermark.Decide(wk, watermark.Enforced(wk.Kind, &rec), next)
		switch d {
		case watermark.Refuse:
			return Result{}, refusal(domain.KindConflict, err, "%v", err)
		case watermark.Replay:
			return g.replay(req, wk, rec, res)
		}
	}
	sig, err := g.call(sign, req.Key)
	if err != nil {
		return Result{}, err
	}
	next.Signature = sig.String()
	stored, err := g.state.Commit(ctx, wk, next)
	if err != nil {
		if domain.KindOf(err) == domain.KindConflict {
			return Result{}, refusal(domain.KindConflict, err, "%v", err)
		}
		return Result{}, unavailable(wk, "recording its mark", err)
	}
	if stored.Signature != next.Signature {
		return g.replay(req, wk, stored, res)
	}
	res.Signature, res.Outcome = sig, Recorded
	return res, nil
}

// replay answers with the signature recorded for the identical request,
// once it verifies for this message and version (watermark.ReplaySignature).
func (g *Guard) replay(req Request, wk watermark.Key, m watermark.Mark, res Result) (Result, error) {
	sig, err := watermark.ReplaySignature(req.Key, wk, m, req.Message, req.Version)
	if err != nil {
		k := domain.KindOf(err)
		if k != domain.KindConflict {
			k = domain.KindUnavailable // an unreadable recorded signature
		}
		return Result{}, refusal(k, err, "%v", err)
	}
	res.Signature, res.Outcome = sig, Replayed
	return res, nil
}

// unavailable is the refusal of a request whose mark could not be read or
// recorded: no signature leaves.
func unavailable(wk watermark.Key, doing string, err error) error {
	return refusal(domain.KindUnavailable, err, "%s: %s failed, so no signature leaves the enclave: %v", wk, doing, err)
}

// keyLocks serializes the watermarked requests of one key; an entry lives
// only while a request holds or waits for it, so that requests naming any
// number of keys leave nothing behind.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if kl.refs--; kl.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case kl.ch <- struct{}{}:
		return func() { <-kl.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// held returns how many keys have a lock entry (tests).
func (l *keyLocks) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
