package enclaveapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/gcpauth"
	"github.com/sigil-signer/sigil/adapters/guardstate/firestore"
	wmem "github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// GuardPolicyEnv is the launch environment variable that may carry the
// guard's policy (JSON, guard.ParseRules): the image's launch policy allows
// it to be overridden, and the attestation token's container claims carry
// its value, so that a changed policy changes the attestation.
const GuardPolicyEnv = "SIGIL_ENCLAVE_GUARD_POLICY"

// GuardWIPProviderEnv is the launch environment variable that may name the
// Workload Identity provider whose principal writes the guard's state.
const GuardWIPProviderEnv = "SIGIL_ENCLAVE_GUARD_WIP_PROVIDER"

// Guard state drivers (--guard-state).
const (
	GuardStateFirestore = "firestore"
	GuardStateMemory    = "memory"
)

// GuardOptions configure the enclave's guard (domain/guard): off unless a
// policy is given.
type GuardOptions struct {
	// PolicyFile is a file holding the policy (--guard-policy); Policy is
	// the policy itself (from GuardPolicyEnv). At most one may be set.
	PolicyFile, Policy string
	// State is the state driver: firestore (default) or memory (tests and
	// development: marks are lost at every restart).
	State string
	// Project, Database and Collection locate the Firestore state.
	Project, Database, Collection string
	// WIPProvider is the Workload Identity provider whose attested
	// principal writes the state (the enclave's own credentials, exchanged
	// with Options.GCP's token file and token service). Not needed with
	// the emulator (FIRESTORE_EMULATOR_HOST).
	WIPProvider string
	// Timeout bounds the guard's work on its state per request; 0 means
	// guard.DefaultTimeout.
	Timeout time.Duration
	// CheckTimeout bounds the start's checks of the state (credentials,
	// reachability); 0 means 30 s.
	CheckTimeout time.Duration
}

// Enabled reports whether a policy is configured.
func (g GuardOptions) Enabled() bool { return g.PolicyFile != "" || g.Policy != "" }

// policy reads the configured policy text.
func (g GuardOptions) policy() ([]byte, string, error) {
	switch {
	case g.PolicyFile != "" && g.Policy != "":
		return nil, "", fmt.Errorf("guard policy given twice: --guard-policy %s and %s; give one", g.PolicyFile, GuardPolicyEnv)
	case g.PolicyFile != "":
		st, err := os.Stat(g.PolicyFile)
		if err != nil {
			return nil, "", fmt.Errorf("--guard-policy: %w", err)
		}
		if st.Size() > guard.MaxPolicySize {
			return nil, "", fmt.Errorf("--guard-policy %s: %d bytes, more than %d", g.PolicyFile, st.Size(), guard.MaxPolicySize)
		}
		b, err := os.ReadFile(g.PolicyFile)
		if err != nil {
			return nil, "", fmt.Errorf("--guard-policy: %w", err)
		}
		return b, "--guard-policy " + g.PolicyFile, nil
	default:
		return []byte(g.Policy), GuardPolicyEnv, nil
	}
}

// openGuard builds the guard o configures (nil when none is): the policy,
// parsed strictly, and its state, checked before the enclave serves.
func openGuard(o Options, log *slog.Logger) (enclave.Guard, func() error, error) {
	g := o.Guard
	if !g.Enabled() {
		return nil, nil, nil
	}
	text, from, err := g.policy()
	if err != nil {
		return nil, nil, err
	}
	rules, err := guard.ParseRules(text)
	if err != nil {
		return nil, nil, fmt.Errorf("guard policy (%s): %w", from, err)
	}
	var (
		state ports.GuardState
		close func() error
		where string
	)
	switch g.State {
	case "", GuardStateFirestore:
		st, err := openGuardFirestore(o, log)
		if err != nil {
			return nil, nil, err
		}
		state, close, where = st, st.Close, st.Location()
	case GuardStateMemory:
		log.Warn("guard state in memory: its watermarks are lost at every restart; never use it in production")
		state, where = wmem.New(wmem.Config{}), "memory"
	default:
		return nil, nil, fmt.Errorf("invalid --guard-state %q (want firestore or memory)", g.State)
	}
	gd, err := guard.New(rules, state, guard.Options{Timeout: g.Timeout})
	if err != nil {
		if close != nil {
			_ = close()
		}
		return nil, nil, err
	}
	log.Info("guard on", "policy", from, "rules", rules.String(), "state", where)
	return loggedGuard{g: enclave.NewGuard(gd), log: log.With("component", "guard"), n: &guardCounts{}}, close, nil
}

// guardCounts are the guard's refusals by kind since the start, in the
// enclave's stats line (SIGUSR1, and at stop).
type guardCounts struct {
	forbidden, conflict, unavailable, invalid, other atomic.Int64
}

func (c *guardCounts) add(k domain.Kind) {
	switch k {
	case domain.KindForbidden:
		c.forbidden.Add(1)
	case domain.KindConflict:
		c.conflict.Add(1)
	case domain.KindUnavailable:
		c.unavailable.Add(1)
	case domain.KindInvalid:
		c.invalid.Add(1)
	default:
		c.other.Add(1)
	}
}

func (c *guardCounts) attrs() []slog.Attr {
	return []slog.Attr{
		slog.Int64("guard_refused_forbidden", c.forbidden.Load()), slog.Int64("guard_refused_conflict", c.conflict.Load()),
		slog.Int64("guard_refused_unavailable", c.unavailable.Load()), slog.Int64("guard_refused_invalid", c.invalid.Load()),
		slog.Int64("guard_refused_other", c.other.Load()),
	}
}

// loggedGuard logs each refusal of the guard (a warning: behind an honest
// daemon, whose own policy and watermarks answer first, a refusal means
// the two witnesses disagree or someone bypasses the daemon). The line
// names the key, the refusal's kind and reason, and the client's pin on
// the attested channel; never a message's bytes, a blob or a signature.
type loggedGuard struct {
	g   enclave.Guard
	log *slog.Logger
	n   *guardCounts
}

func (l loggedGuard) Sign(ctx context.Context, req enclave.SignRequest, sign func() (tezos.Signature, error)) (tezos.Signature, error) {
	sig, err := l.g.Sign(ctx, req, sign)
	var e *enclave.Error
	if err != nil && errors.As(err, &e) && strings.HasPrefix(e.Message, guard.WirePrefix) {
		kind, _ := guard.KindOfWire(e.Message)
		l.n.add(kind)
		attrs := []slog.Attr{
			slog.String("key", req.Key.Hash().String()),
			slog.String("kind", strings.TrimPrefix(e.Message, guard.WirePrefix)),
			slog.Bool("with_blob", req.WithBlob),
		}
		if e.Source != nil {
			attrs = append(attrs, slog.String("reason", e.Source.Message))
		}
		if req.Channel.Attested {
			attrs = append(attrs, slog.String("client_pin", req.Channel.ClientPin.String()))
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "guard refused a signature", attrs...)
	}
	return sig, err
}

func openGuardFirestore(o Options, log *slog.Logger) (*firestore.State, error) {
	g := o.Guard
	cfg := firestore.Config{Project: g.Project, Database: g.Database, Collection: g.Collection}
	checkTimeout := g.CheckTimeout
	if checkTimeout <= 0 {
		checkTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	emulator := os.Getenv(firestore.EmulatorEnv)
	if g.WIPProvider == "" && emulator == "" {
		return nil, errors.New("the guard's Firestore state is written with the enclave's attested credentials: give --guard-wip-provider (or " + GuardWIPProviderEnv + ")")
	}
	if g.WIPProvider != "" {
		// Exchanged and checked even on the emulator (which ignores
		// them), so that a refused exchange stops the start everywhere.
		auth := gcpauth.Config{TokenFile: o.GCP.TokenFile, TokenURL: o.GCP.TokenURL}
		ts, err := gcpauth.TokenSource(auth, g.WIPProvider)
		if err != nil {
			return nil, fmt.Errorf("--guard-wip-provider: %w", err)
		}
		if err := gcpauth.Check(ctx, auth, ts, g.WIPProvider); err != nil {
			return nil, fmt.Errorf("guard state: %w", err)
		}
		cfg.Credentials = ts
	}
	if emulator != "" {
		log.Warn("guard state on the Firestore emulator", "host", emulator)
	}
	st, err := firestore.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := st.Healthy(ctx); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("guard state unreachable: %w", err)
	}
	return st, nil
}
