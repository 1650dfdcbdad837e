// Package firestore is the enclave guard's durable state (ports.GuardState)
// in Firestore: the high watermarks the guard commits before a signature
// leaves the enclave, in a database that IAM lets only the attested
// workload write (docs/security.md), reached with the enclave's own
// attested credentials (adapters/gcpauth: the launcher's attestation token
// exchanged at the Security Token Service), so that the daemon's host can
// neither forge nor roll back a mark. Marks use the layout of the daemon's
// Firestore watermark store (one document per mark at
// <collection>/<chain id>/<request kind>/<key hash>, fields request, lvl,
// round, digest, signature), in a collection of their own. Every Commit is
// an atomic conditional write decided with domain/watermark on the document
// as last read (a create that fails if the document exists, or an update
// preconditioned on its update time), as the daemon's store does it: two
// enclaves sharing the database never both record conflicting marks (the
// loser's precondition fails; it reads again and decides again). Check answers from the marks this process has seen
// recorded, which is safe because marks only rise. Transient errors are
// retried with capped exponential backoff bounded by the caller's context.
// FIRESTORE_EMULATOR_HOST is honoured (tests), and then no credentials are
// used.
package firestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	gfs "cloud.google.com/go/firestore"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigil-signer/sigil/adapters/internal/gcpretry"
	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// Defaults.
const (
	// DefaultCollection is the guard's root collection: not the daemon's
	// ("watermark"), so that the two witnesses never share a document.
	DefaultCollection = "sigil-guard"
	// DefaultDatabase is Firestore's default database.
	DefaultDatabase = "(default)"
)

// Field names of a mark's document (those of the daemon's store).
const (
	FieldRequest   = "request"
	FieldLevel     = "lvl"
	FieldRound     = "round"
	FieldDigest    = "digest"
	FieldSignature = "signature"
)

// EmulatorEnv names the emulator's address; when set, the client talks to
// it without credentials.
const EmulatorEnv = "FIRESTORE_EMULATOR_HOST"

// Config says where the guard's marks are and with which credentials.
type Config struct {
	// Project is the GCP project id of the database (required).
	Project string
	// Database is the Firestore database id; default DefaultDatabase.
	Database string
	// Collection is the root collection; default DefaultCollection.
	Collection string
	// Credentials are the enclave's attested credentials
	// (gcpauth.TokenSource). Required unless EmulatorEnv is set.
	Credentials oauth2.TokenSource
}

func (c Config) resolve() (Config, error) {
	if strings.TrimSpace(c.Project) == "" {
		return c, domain.Errorf(domain.KindInvalid, "guard firestore: no project (--guard-firestore-project)")
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	if strings.Contains(c.Collection, "/") || strings.TrimSpace(c.Collection) != c.Collection {
		return c, domain.Errorf(domain.KindInvalid, "guard firestore: collection %q must be a collection id (no '/', no surrounding space)", c.Collection)
	}
	if c.Credentials == nil && os.Getenv(EmulatorEnv) == "" {
		return c, domain.Errorf(domain.KindInvalid, "guard firestore: no credentials: the guard writes with the enclave's attested credentials (a Workload Identity provider), or to the emulator (%s)", EmulatorEnv)
	}
	return c, nil
}

var defaultRetry = gcpretry.Policy{Initial: 50 * time.Millisecond, Max: time.Second, Attempts: 8}

// State is the Firestore ports.GuardState. It is safe for concurrent use;
// Close releases the client.
type State struct {
	client *gfs.Client
	col    *gfs.CollectionRef
	where  string
	retry  gcpretry.Policy
	keys   *wm.Shared[docState] // marks seen (Check), documents as last read or written (Commit)
}

var _ ports.GuardState = (*State)(nil)

// New creates the client for cfg. It does not contact the server.
func New(ctx context.Context, cfg Config) (*State, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	var opts []option.ClientOption
	if os.Getenv(EmulatorEnv) == "" {
		opts = append(opts, option.WithTokenSource(cfg.Credentials))
	}
	client, err := gfs.NewClientWithDatabase(ctx, cfg.Project, cfg.Database, opts...)
	if err != nil {
		return nil, domain.Errorf(domain.KindUnavailable, "guard firestore: client for project %s, database %s: %w", cfg.Project, cfg.Database, err)
	}
	return &State{
		client: client,
		col:    client.Collection(cfg.Collection),
		where:  fmt.Sprintf("project %s, database %s, collection %s", cfg.Project, cfg.Database, cfg.Collection),
		retry:  defaultRetry,
		keys:   wm.NewShared[docState]("guard firestore"),
	}, nil
}

// Close releases the Firestore client.
func (s *State) Close() error { return s.client.Close() }

// Location names where the marks are.
func (s *State) Location() string { return s.where }

// Healthy reads one absent document: it fails when Firestore cannot be
// reached or refuses the enclave's credentials.
func (s *State) Healthy(ctx context.Context) error {
	err := gcpretry.Do(ctx, s.retry, nil, func(ctx context.Context) error {
		_, err := s.col.Doc("_health").Get(ctx)
		if status.Code(err) == codes.NotFound {
			return nil
		}
		return err
	})
	if err != nil {
		return s.fail(ctx, "health check", err)
	}
	return nil
}

func (s *State) doc(k watermark.Key) *gfs.DocumentRef {
	return s.col.Doc(k.ChainID).Collection(k.Kind).Doc(k.PKH)
}

// Check returns the highest mark this process has seen recorded for k (not
// authoritative: another enclave may have recorded a higher one).
func (s *State) Check(_ context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	return s.keys.Check(k)
}

// Commit records m for k as ports.GuardState specifies, with a
// conditional write decided on the document as last read: a create that
// fails if the document exists, or an update preconditioned on the update
// time this process read. Firestore applies it atomically, so two enclaves
// sharing the database never both record conflicting marks: the loser's
// precondition fails, it reads the document again and decides again. It
// returns m (recorded), the recorded mark (the identical request, already
// recorded: its signature is the one to return), or a domain.KindConflict
// error; any other failure means nothing is known to be recorded, and the
// guard lets no signature leave. One round trip per commit in the steady
// state, two for a key's first commit after start (the read). The guard
// serializes the commits of one key in this process.
func (s *State) Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := watermark.ValidateCommit(k, m); err != nil {
		return watermark.Mark{}, err
	}
	ref := s.doc(k)
	for attempt := 1; ; attempt++ {
		st, known := s.keys.State(k)
		if !known {
			err := gcpretry.Do(ctx, s.retry, nil, func(ctx context.Context) error {
				var err error
				st, err = read(ctx, ref)
				return err
			})
			if err != nil {
				return watermark.Mark{}, s.fail(ctx, "read "+k.String(), err)
			}
			s.keys.SetState(k, st)
		}
		var rec *watermark.Mark
		if st.exists {
			rec = &st.mark
			s.keys.Remember(k, st.mark)
		}
		switch d, err := watermark.Decide(k, watermark.Enforced(k.Kind, rec), m); d {
		case watermark.Replay:
			return *rec, nil
		case watermark.Resign:
			// The very message of a mark recorded without its signature:
			// signed again, nothing to record.
			return m, nil
		case watermark.Refuse:
			return watermark.Mark{}, err
		}
		var wr *gfs.WriteResult
		err := gcpretry.Do(ctx, s.retry, nil, func(ctx context.Context) error {
			var err error
			if st.exists {
				wr, err = ref.Update(ctx, updates(k, m), gfs.LastUpdateTime(st.updated))
			} else {
				wr, err = ref.Create(ctx, fields(k, m))
			}
			return err
		})
		switch status.Code(err) {
		case codes.OK:
			s.keys.SetState(k, docState{exists: true, mark: m, updated: wr.UpdateTime})
			s.keys.Remember(k, m)
			return m, nil
		case codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound:
			// Written by another enclave since we read it (or by our own
			// write whose reply was lost): read again, decide again.
			s.keys.ForgetState(k)
			if attempt < casAttempts {
				continue
			}
			return watermark.Mark{}, domain.Errorf(domain.KindUnavailable, "guard firestore: %s: %s changed under %d attempts in a row", s.where, k, attempt)
		default:
			s.keys.ForgetState(k)
			return watermark.Mark{}, s.fail(ctx, "commit "+k.String(), err)
		}
	}
}

// casAttempts bounds how often Commit reads and decides again after another
// writer changed the document between its read and its write.
const casAttempts = 8

// docState is what this process last knew of a mark's document.
type docState struct {
	exists  bool
	mark    watermark.Mark
	updated time.Time
}

// read returns the document's current state.
func read(ctx context.Context, ref *gfs.DocumentRef) (docState, error) {
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return docState{}, nil
	}
	if err != nil {
		return docState{}, err
	}
	m, err := decode(snap)
	if err != nil {
		return docState{}, err
	}
	return docState{exists: true, mark: m, updated: snap.UpdateTime}, nil
}

func fields(k watermark.Key, m watermark.Mark) map[string]any {
	return map[string]any{
		FieldRequest:   k.Kind,
		FieldLevel:     int64(m.Level),
		FieldRound:     int64(m.Round),
		FieldDigest:    m.Digest[:],
		FieldSignature: m.Signature,
	}
}

// updates is fields as a full update of an existing document.
func updates(k watermark.Key, m watermark.Mark) []gfs.Update {
	f := fields(k, m)
	out := make([]gfs.Update, 0, len(f))
	for name, v := range f {
		out = append(out, gfs.Update{Path: name, Value: v})
	}
	return out
}

// decode reads a mark's document; anything malformed is an error (the
// guard then lets no signature leave), never a missing mark.
func decode(snap *gfs.DocumentSnapshot) (watermark.Mark, error) {
	bad := func(format string, args ...any) error {
		return domain.Errorf(domain.KindInternal, "guard firestore: document %s is malformed: %s", snap.Ref.Path, fmt.Sprintf(format, args...))
	}
	data := snap.Data()
	var m watermark.Mark
	for _, f := range []struct {
		name string
		dst  *int32
	}{{FieldLevel, &m.Level}, {FieldRound, &m.Round}} {
		v, ok := data[f.name].(int64)
		if !ok || v < 0 || v > math.MaxInt32 {
			return m, bad("field %s is %v, not a level or round", f.name, data[f.name])
		}
		*f.dst = int32(v)
	}
	d, ok := data[FieldDigest].([]byte)
	if !ok || len(d) != len(m.Digest) {
		return m, bad("field %s is not 32 bytes", FieldDigest)
	}
	copy(m.Digest[:], d)
	switch sig := data[FieldSignature].(type) {
	case nil:
	case string:
		m.Signature = sig
	default:
		return m, bad("field %s is a %T", FieldSignature, sig)
	}
	return m, nil
}

// fail wraps a failed operation's error; domain errors pass through.
func (s *State) fail(ctx context.Context, op string, err error) error {
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	if gcpretry.Transient(err) || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return domain.Errorf(domain.KindUnavailable, "guard firestore: %s: %s: %w", s.where, op, err)
	}
	return fmt.Errorf("guard firestore: %s: %s: %w", s.where, op, err)
}
