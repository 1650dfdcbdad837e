package witness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// Guard is a ports.WatermarkStore that wraps the configured backend with
// the witness. Check and Commit of a key held back (its backend behind the
// witness) are refused; every mark a Commit returns is checked against the
// witness (domain/watermark.CheckRelease) and witnessed durably before it
// is returned, so before the signature leaves. Export and Import go to the
// backend.
type Guard struct {
	inner   ports.WatermarkStore
	w       ports.WatermarkWitness
	log     *slog.Logger
	backend string // "file /var/lib/sigil/watermark_v2", for messages

	opts GuardOptions

	mu      sync.RWMutex
	held    map[string]error // key hash → why its consensus signing is refused
	pending error            // the comparison is not made yet (the backend could not be read)

	stop func()        // ends the background comparison
	done chan struct{} // closed when it has ended
}

var _ ports.WatermarkStore = (*Guard)(nil)

// GuardOptions configure NewGuard.
type GuardOptions struct {
	// Backend names the backend and its location in messages.
	Backend string
	// AcceptReset are key hashes whose lag the operator accepts
	// (--accept-watermark-reset): their witnessed marks are dropped, and
	// they sign from the backend's marks.
	AcceptReset []string
	// Logger receives the start-up comparison and every refusal.
	Logger *slog.Logger
}

// NewGuard compares the backend with the witness and returns the guarded
// store. A witness that did not exist yet (a first start with one, or a new
// state directory) is initialised from the backend's marks, and says so; a
// backend behind the witness holds its keys back (logged as errors, and
// reported by Ready) unless the operator accepted the reset of that key.
// A backend that cannot be read at start (Firestore or DynamoDB down) does
// not stop the daemon: every consensus request is held back, and the
// comparison retried every RetryEvery, until it is made. Stop ends the
// retries.
func NewGuard(ctx context.Context, inner ports.WatermarkStore, w ports.WatermarkWitness, o GuardOptions) (*Guard, error) {
	g := &Guard{inner: inner, w: w, log: o.Logger, backend: o.Backend, held: map[string]error{}, opts: o}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	err := g.compare(ctx)
	var be *backendUnreadable
	if !errors.As(err, &be) {
		if err != nil {
			return nil, err
		}
		return g, nil
	}
	g.mu.Lock()
	g.pending = domain.Errorf(domain.KindUnavailable, "watermark witness: the backend's marks could not be read yet to compare them with the witness, so no consensus request is signed: %v", be.err)
	g.mu.Unlock()
	g.log.Error("watermark witness: cannot read the backend's marks to compare them; consensus signing waits until it can (retrying)", "backend", o.Backend, "error", be.err.Error())
	rctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	g.done = make(chan struct{})
	go g.retry(rctx)
	return g, nil
}

// RetryEvery is how often a comparison that could not read the backend is
// tried again.
var RetryEvery = 2 * time.Second

// backendUnreadable is compare's error when the backend could not be read.
type backendUnreadable struct{ err error }

func (e *backendUnreadable) Error() string { return e.err.Error() }

func (g *Guard) retry(ctx context.Context) {
	defer close(g.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(RetryEvery):
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := g.compare(cctx)
		cancel()
		var be *backendUnreadable
		switch {
		case err == nil:
			g.mu.Lock()
			g.pending = nil
			g.mu.Unlock()
			return
		case errors.As(err, &be):
			g.log.Debug("watermark witness: the backend still cannot be read", "error", be.err.Error())
		default:
			g.mu.Lock()
			g.pending = domain.Errorf(domain.KindUnavailable, "watermark witness: %v", err)
			g.mu.Unlock()
			g.log.Error("watermark witness: comparing with the backend failed", "error", err.Error())
			return
		}
	}
}

// Stop ends the background comparison, if one is running.
func (g *Guard) Stop() {
	if g.stop != nil {
		g.stop()
		<-g.done
	}
}

// compare reads the backend and decides which keys are held back (or
// initialises a fresh witness).
func (g *Guard) compare(ctx context.Context) error {
	o, w := g.opts, g.w
	backendRecs, err := g.inner.Export(ctx)
	if err != nil {
		return &backendUnreadable{err: err}
	}
	if w.Fresh() && len(w.Records()) == 0 {
		recs := make([]watermark.Record, len(backendRecs))
		for i, r := range backendRecs {
			r.Signature = ""
			recs[i] = r
		}
		if err := w.Witness(ctx, recs...); err != nil {
			return err
		}
		g.log.Info("watermark witness initialised from the backend's marks (no witness yet: a first start with this version, or a new state directory)",
			"witness", w.Location(), "backend", o.Backend, "marks", len(recs))
		for _, pkh := range o.AcceptReset {
			g.log.Warn("--accept-watermark-reset: nothing to accept, the witness was just created", "pkh", pkh)
		}
		return nil
	}
	lags := watermark.ByKey(watermark.Lags(w.Records(), backendRecs))
	for _, pkh := range o.AcceptReset {
		l, ok := lags[pkh]
		if !ok {
			g.log.Warn("--accept-watermark-reset: nothing to accept, the backend is not behind the witness for this key", "pkh", pkh)
			continue
		}
		keys := make([]watermark.Key, len(l))
		desc := make([]string, len(l))
		for i, x := range l {
			keys[i], desc[i] = x.Key, x.String()
		}
		if err := w.Forget(keys); err != nil {
			return err
		}
		delete(lags, pkh)
		g.log.Warn("watermark reset accepted (--accept-watermark-reset): this key signs from the backend's marks, below what this daemon committed",
			"pkh", pkh, "backend", o.Backend, "witness", w.Location(), "lags", strings.Join(desc, "; "))
	}
	pkhs := make([]string, 0, len(lags))
	for pkh := range lags {
		pkhs = append(pkhs, pkh)
	}
	sort.Strings(pkhs)
	held := make(map[string]error, len(pkhs))
	for _, pkh := range pkhs {
		err := watermark.HeldBack(pkh, lags[pkh], o.Backend, w.Location())
		held[pkh] = err
		g.log.Error("watermark backend behind the witness: consensus signing refused for this key", "pkh", pkh, "error", err.Error())
	}
	g.mu.Lock()
	for pkh, err := range held {
		g.held[pkh] = err
	}
	g.mu.Unlock()
	g.log.Info("watermark witness compared with the backend", "witness", w.Location(), "backend", o.Backend,
		"witnessed", len(w.Records()), "backend_marks", len(backendRecs), "keys_held_back", len(pkhs))
	return nil
}

// heldBack returns why k's key may not sign consensus requests, or nil.
func (g *Guard) heldBack(pkh string) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.pending != nil {
		return g.pending
	}
	return g.held[pkh]
}

// Check implements ports.WatermarkStore.
func (g *Guard) Check(ctx context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	if err := g.heldBack(k.PKH); err != nil {
		return watermark.Mark{}, false, err
	}
	return g.inner.Check(ctx, k)
}

// Commit implements ports.WatermarkStore: the backend decides; the mark it
// returns must not be behind the witness, and is witnessed durably before
// Commit returns it.
func (g *Guard) Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := g.heldBack(k.PKH); err != nil {
		return watermark.Mark{}, err
	}
	got, err := g.inner.Commit(ctx, k, m)
	if err != nil {
		return watermark.Mark{}, err
	}
	var wp *watermark.Mark
	if w, ok := g.w.Mark(k); ok {
		wp = &w
	}
	if err := watermark.CheckRelease(k, wp, got); err != nil {
		// The backend lost marks while the daemon ran: hold the key back
		// from now on, as at a start.
		held := watermark.HeldBack(k.PKH, []watermark.Lag{{Key: k, Witness: *wp, Backend: &got}}, g.backend, g.w.Location())
		g.mu.Lock()
		g.held[k.PKH] = held
		g.mu.Unlock()
		g.log.ErrorContext(ctx, "watermark backend behind the witness while running: signature withheld, consensus signing refused for this key", "pkh", k.PKH, "error", err.Error())
		return watermark.Mark{}, err
	}
	rec := watermark.Record{Key: k, Mark: got}
	rec.Signature = ""
	if err := g.w.Witness(ctx, rec); err != nil {
		return watermark.Mark{}, fmt.Errorf("%w (the mark is in the backend; the signature is not released)", err)
	}
	return got, nil
}

// Export implements ports.WatermarkStore (the backend's marks).
func (g *Guard) Export(ctx context.Context) ([]watermark.Record, error) { return g.inner.Export(ctx) }

// Import implements ports.WatermarkStore (into the backend).
func (g *Guard) Import(ctx context.Context, recs []watermark.Record) error {
	return g.inner.Import(ctx, recs)
}

// Ready reports the keys held back: consensus requests for them fail.
func (g *Guard) Ready() error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.pending != nil {
		return g.pending
	}
	if len(g.held) == 0 {
		return nil
	}
	pkhs := make([]string, 0, len(g.held))
	for pkh := range g.held {
		pkhs = append(pkhs, pkh)
	}
	sort.Strings(pkhs)
	return domain.Errorf(domain.KindUnavailable, "watermark witness: %d key(s) held back (%s): %v", len(pkhs), strings.Join(pkhs, ", "), g.held[pkhs[0]])
}

// Healthy implements ports.HealthChecker: the backend's probe, and the
// witness's (a commit needs both).
func (g *Guard) Healthy(ctx context.Context) error {
	if hc, ok := g.inner.(ports.HealthChecker); ok {
		if err := hc.Healthy(ctx); err != nil {
			return err
		}
	}
	if hc, ok := g.w.(ports.HealthChecker); ok {
		return hc.Healthy(ctx)
	}
	return nil
}

// Unwrap returns the guarded backend.
func (g *Guard) Unwrap() ports.WatermarkStore { return g.inner }
