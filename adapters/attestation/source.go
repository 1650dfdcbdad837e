package attestation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/domain/attestation"
)

// Fetcher asks for a token (*Launcher in production).
type Fetcher interface {
	Token(ctx context.Context, r TokenRequest) (string, error)
}

// SourceConfig configures a Source.
type SourceConfig struct {
	Fetcher Fetcher      // required
	Request TokenRequest // audience, the nonce of the enclave's TLS key, token type
	Log     *slog.Logger
	// RetryInitial and RetryMax bound the backoff between failed attempts
	// (defaults 1 s and 30 s); a wait never exceeds half the time the
	// current token has left, nor falls below attestation.MinRetry.
	RetryInitial, RetryMax time.Duration
	// FetchTimeout bounds one request to the launcher (default 30 s).
	FetchTimeout time.Duration
}

// Source keeps the enclave's current attestation token: the first one is
// fetched by Start, later ones halfway through the current one's lifetime
// (attestation.RenewAt), retrying with backoff on failure. Current never
// returns an expired token. Its methods are safe for concurrent use.
type Source struct {
	cfg    SourceConfig
	log    *slog.Logger
	mu     sync.Mutex
	tok    Token
	last   error // the last failed attempt, while the token is not renewed
	stop   context.CancelFunc
	done   chan struct{}
	closed bool
}

// NewSource checks cfg and returns a Source that has no token yet.
func NewSource(cfg SourceConfig) (*Source, error) {
	if cfg.Fetcher == nil {
		return nil, errors.New("attestation source: no fetcher")
	}
	if err := cfg.Request.Validate(); err != nil {
		return nil, err
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = time.Second
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = max(30*time.Second, cfg.RetryInitial)
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 30 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, log: log, done: make(chan struct{})}, nil
}

// ErrNoToken is wrapped by Current when the source holds no valid token.
var ErrNoToken = errors.New("no valid attestation token")

// Start fetches the first token, retrying with backoff until it succeeds
// or ctx ends, then renews it in the background until Close.
func (s *Source) Start(ctx context.Context) error {
	backoff := s.cfg.RetryInitial
	for {
		err := s.fetch(ctx)
		if err == nil {
			break
		}
		s.log.Warn("cannot get an attestation token from the launcher; retrying", "error", err.Error(), "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("attestation token: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.RetryMax)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return errors.New("attestation source closed")
	}
	s.stop = cancel
	s.mu.Unlock()
	go s.renew(bg)
	return nil
}

// Current returns the current token, or an error wrapping ErrNoToken when
// it has expired (with the last renewal error) or none was fetched.
func (s *Source) Current() (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.ValidAt(time.Now()) {
		return s.tok, nil
	}
	if s.tok.Raw == "" {
		return Token{}, fmt.Errorf("%w: none fetched yet", ErrNoToken)
	}
	return Token{}, fmt.Errorf("%w: the token expired at %s and could not be renewed (%v)", ErrNoToken, s.tok.Expiry.UTC().Format(time.RFC3339), s.last)
}

// Close stops the renewals.
func (s *Source) Close() {
	s.mu.Lock()
	s.closed = true
	stop := s.stop
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-s.done
	}
}

func (s *Source) fetch(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FetchTimeout)
	defer cancel()
	raw, err := s.cfg.Fetcher.Token(fctx, s.cfg.Request)
	if err == nil {
		var tok Token
		if tok, err = readToken(raw, s.cfg.Request, time.Now()); err == nil {
			if !tok.ValidAt(tok.Fetched) {
				err = fmt.Errorf("launcher token: expired on arrival (exp %s)", tok.Expiry.UTC().Format(time.RFC3339))
			} else {
				s.mu.Lock()
				s.tok, s.last = tok, nil
				s.mu.Unlock()
				return nil
			}
		}
	}
	s.mu.Lock()
	s.last = err
	s.mu.Unlock()
	return err
}

func (s *Source) renew(ctx context.Context) {
	defer close(s.done)
	backoff := s.cfg.RetryInitial
	s.mu.Lock()
	tok := s.tok
	s.mu.Unlock()
	next := attestation.RenewAt(tok.Fetched, tok.IssuedAt, tok.Expiry)
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff
			if left := time.Until(tok.Expiry); left > 0 {
				wait = min(wait, left/2)
			}
			wait = max(wait, attestation.MinRetry)
			s.log.Warn("cannot renew the attestation token; retrying", "error", err.Error(),
				"expires", tok.Expiry.UTC().Format(time.RFC3339), "retry_in", wait)
			backoff = min(backoff*2, s.cfg.RetryMax)
			next = time.Now().Add(wait)
			continue
		}
		backoff = s.cfg.RetryInitial
		s.mu.Lock()
		tok = s.tok
		s.mu.Unlock()
		s.log.Debug("attestation token renewed", "expires", tok.Expiry.UTC().Format(time.RFC3339))
		next = attestation.RenewAt(tok.Fetched, tok.IssuedAt, tok.Expiry)
	}
}
