// Package firestore is the Firestore watermark store (drivers "gcp" and
// "firestore"), for several daemons sharing one database. Marks live in
// Signatory's layout, one document per mark at
// <collection>/<chain id>/<request kind>/<key hash>, with the fields request,
// lvl, round, digest (bytes) and Sigil's signature. Each Commit is one
// conditional write (a create that fails if the document exists, or an update
// preconditioned on the update time this process last saw), decided on the
// document as last read: one round trip in the steady state, and two daemons
// can never both record the same level and round with different digests (the
// loser's precondition fails, it re-reads and decides again). Check answers
// from a local cache of marks this process has seen recorded, which is safe
// because marks only rise. Transient errors are retried with capped
// exponential backoff bounded by the caller's context. FIRESTORE_EMULATOR_HOST
// is honoured.
package firestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/gcpretry"

	gfs "cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagefs "github.com/sigil-signer/sigil/adapters/storage/firestore"
	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultCollection is the collection used when none is configured
// (Signatory's default).
const DefaultCollection = "watermark"

// DefaultDatabase is the database used when none is configured.
const DefaultDatabase = "(default)"

// Field names of a watermark document.
const (
	FieldRequest   = "request"
	FieldLevel     = "lvl"
	FieldRound     = "round"
	FieldDigest    = "digest"
	FieldSignature = "signature"
)

// Config configures the firestore driver.
type Config struct {
	// Project is the GCP project id (required).
	Project string `yaml:"project"`
	// Database is the Firestore database id (default "(default)").
	Database string `yaml:"database"`
	// Collection is the root collection (default "watermark").
	Collection string `yaml:"collection"`
	// ApplicationCredentials is the path of a GCP credentials JSON file; it
	// overrides GOOGLE_APPLICATION_CREDENTIALS.
	ApplicationCredentials string `yaml:"application_credentials"`
	// ApplicationCredentialsData is GCP credentials JSON; it overrides
	// ApplicationCredentials.
	ApplicationCredentialsData string `yaml:"application_credentials_data"`
}

// resolve validates cfg and returns the database, the collection and the
// client options (no network).
func (cfg Config) resolve() (db, name string, opts []option.ClientOption, err error) {
	if strings.TrimSpace(cfg.Project) == "" {
		return "", "", nil, domain.Errorf(domain.KindInvalid, "firestore watermark: missing required field project")
	}
	db = cfg.Database
	if db == "" {
		db = DefaultDatabase
	}
	name = cfg.Collection
	if name == "" {
		name = DefaultCollection
	}
	if strings.Contains(name, "/") {
		return "", "", nil, domain.Errorf(domain.KindInvalid, "firestore watermark: collection %q must be a collection id, without '/'", name)
	}
	opts, err = storagefs.ClientOptions(cfg.ApplicationCredentials, cfg.ApplicationCredentialsData)
	if err != nil {
		return "", "", nil, fmt.Errorf("firestore watermark: %w", err)
	}
	return db, name, opts, nil
}

var defaultRetry = gcpretry.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Attempts: 10}

// txAttempts is how many times the SDK runs a transaction that aborts on
// contention before giving up (and our own retry takes over).
const txAttempts = 5

// Store is a Firestore-backed ports.WatermarkStore. It is safe for
// concurrent use. Close releases the client.
type Store struct {
	client *gfs.Client
	col    *gfs.CollectionRef
	where  string
	retry  gcpretry.Policy
	rec    wm.IORecorder
	keys   *wm.Shared[docState] // per-key lock, marks seen (Check), documents as last read or written (Commit)
}

var _ ports.WatermarkStore = (*Store)(nil)

// New creates the client for cfg. It does not contact the server.
func New(ctx context.Context, cfg Config) (*Store, error) {
	db, name, opts, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	client, err := gfs.NewClientWithDatabase(ctx, cfg.Project, db, opts...)
	if err != nil {
		return nil, domain.Errorf(domain.KindUnavailable, "firestore watermark: create client for project %s, database %s: %w", cfg.Project, db, err)
	}
	return &Store{
		client: client,
		col:    client.Collection(name),
		where:  fmt.Sprintf("project %s, database %s, collection %s", cfg.Project, db, name),
		retry:  defaultRetry,
		keys:   wm.NewShared[docState]("firestore watermark"),
	}, nil
}

// Close releases the Firestore client.
func (s *Store) Close() error { return s.client.Close() }

// Healthy implements ports.HealthChecker: it reads one (absent) document of
// the collection, so it fails when Firestore cannot be reached or refuses
// this daemon's credentials.
func (s *Store) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.col.Doc("_health").Get(ctx)
	if err == nil || status.Code(err) == codes.NotFound {
		return nil
	}
	return s.fail(ctx, "health check", err)
}

func (s *Store) doc(k watermark.Key) *gfs.DocumentRef {
	return s.col.Doc(k.ChainID).Collection(k.Kind).Doc(k.PKH)
}

// Check returns the highest mark this store has seen recorded for k. It is
// not authoritative: another daemon may have recorded a higher one.
func (s *Store) Check(_ context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	return s.keys.Check(k)
}

// docState is what this store last knew of a watermark document: its mark
// and update time, or that it did not exist.
type docState struct {
	exists  bool
	mark    watermark.Mark
	updated time.Time
}

// casAttempts bounds how often Commit re-reads and re-decides after another
// writer changed the document between its read and its write.
const casAttempts = 8

// Commit records m for k as ports.WatermarkStore specifies, with optimistic
// concurrency: it decides on the document as this store last saw it and
// writes only if the document is still exactly that (a create that fails if
// the document exists, or an update preconditioned on its update time). So a
// key's commits cost one round trip in the steady state (two for the first
// commit after start, which reads the document), and two daemons sharing the
// database can never both record the same level and round: the second write
// fails its precondition, and that daemon re-reads and decides again.
func (s *Store) Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := watermark.ValidateCommit(k, m); err != nil {
		return watermark.Mark{}, err
	}
	unlock, err := s.keys.Lock(ctx, k)
	if err != nil {
		return watermark.Mark{}, err
	}
	defer unlock()
	ref := s.doc(k)
	for attempt := 1; ; attempt++ {
		st, known := s.keys.State(k)
		if !known {
			if err := s.do(ctx, func(ctx context.Context) error {
				var err error
				start := time.Now()
				st, err = read(ctx, ref)
				s.rec.Observe("read", start, err, ioErrorType(err))
				return err
			}); err != nil {
				return watermark.Mark{}, s.fail(ctx, "read "+k.String(), err)
			}
			s.keys.SetState(k, st)
		}
		var recorded *watermark.Mark
		if st.exists {
			recorded = &st.mark
			s.keys.Remember(k, st.mark)
		}
		// A block mark Signatory recorded (no signature) covers its level.
		switch d, err := watermark.Decide(k, watermark.Enforced(k.Kind, recorded), m); d {
		case watermark.Replay:
			return *recorded, nil
		case watermark.Resign:
			// The very message of a mark recorded without its signature
			// (Signatory's): signed again, nothing to record.
			return m, nil
		case watermark.Refuse:
			return watermark.Mark{}, err
		}
		var wr *gfs.WriteResult
		err := s.do(ctx, func(ctx context.Context) error {
			var err error
			start, op := time.Now(), "write"
			if st.exists {
				wr, err = ref.Update(ctx, updates(k, m), gfs.LastUpdateTime(st.updated))
			} else {
				op = "create"
				wr, err = ref.Create(ctx, fields(k, m))
			}
			s.rec.Observe(op, start, err, ioErrorType(err))
			return err
		})
		switch status.Code(err) {
		case codes.OK:
			s.keys.SetState(k, docState{exists: true, mark: m, updated: wr.UpdateTime})
			s.keys.Remember(k, m)
			return m, nil
		case codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound:
			// Written by someone else since we read it (or by our own
			// write whose reply was lost): read again and decide again.
			s.keys.ForgetState(k)
			if attempt < casAttempts {
				continue
			}
			return watermark.Mark{}, domain.Errorf(domain.KindUnavailable, "firestore watermark: %s: %s changed under %d attempts in a row", s.where, k, attempt)
		default:
			s.keys.ForgetState(k)
			return watermark.Mark{}, s.fail(ctx, "commit "+k.String(), err)
		}
	}
}

// ioErrorType classifies a Firestore error for watermark_io_errors_total.
func ioErrorType(err error) string {
	switch status.Code(err) {
	case codes.OK:
		return ""
	case codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound:
		return "conflict"
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
		return "unavailable"
	case codes.PermissionDenied, codes.Unauthenticated:
		return "permission"
	}
	return "other"
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

// updates is fields as a full update of an existing document.
func updates(k watermark.Key, m watermark.Mark) []gfs.Update {
	f := fields(k, m)
	out := make([]gfs.Update, 0, len(f))
	for name, v := range f {
		out = append(out, gfs.Update{Path: name, Value: v})
	}
	return out
}

// getMark reads the mark in ref within tx (nil if there is none).
func getMark(tx *gfs.Transaction, ref *gfs.DocumentRef) (*watermark.Mark, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := decode(snap)
	if err != nil {
		return nil, err
	}
	return &m, nil
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

// decode reads a watermark document. Signatory's documents have no
// signature and may hold the digest as an array of integers.
func decode(snap *gfs.DocumentSnapshot) (watermark.Mark, error) {
	bad := func(format string, args ...any) error {
		return domain.Errorf(domain.KindInternal, "firestore watermark: document %s is malformed: %s", snap.Ref.Path, fmt.Sprintf(format, args...))
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
	switch d := data[FieldDigest].(type) {
	case nil:
	case []byte:
		if len(d) != len(m.Digest) {
			return m, bad("digest has %d bytes, not 32", len(d))
		}
		copy(m.Digest[:], d)
	case []any:
		if len(d) != len(m.Digest) {
			return m, bad("digest has %d elements, not 32", len(d))
		}
		for i, e := range d {
			b, ok := e.(int64)
			if !ok || b < 0 || b > 255 {
				return m, bad("digest element %d is %v, not a byte", i, e)
			}
			m.Digest[i] = byte(b)
		}
	default:
		return m, bad("digest is a %T", d)
	}
	switch sig := data[FieldSignature].(type) {
	case nil:
	case string:
		m.Signature = sig
	default:
		return m, bad("signature is a %T", sig)
	}
	return m, nil
}

// Export returns every mark in the collection.
func (s *Store) Export(ctx context.Context) ([]watermark.Record, error) {
	var out []watermark.Record
	err := s.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		chains := s.col.DocumentRefs(ctx)
		for {
			chainRef, err := chains.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			if !watermark.ValidChainID(chainRef.ID) {
				continue
			}
			kinds := chainRef.Collections(ctx)
			for {
				kindRef, err := kinds.Next()
				if errors.Is(err, iterator.Done) {
					break
				}
				if err != nil {
					return err
				}
				if !watermark.ValidKind(kindRef.ID) {
					continue // e.g. Signatory's legacy "endorsement"
				}
				snaps, err := kindRef.Documents(ctx).GetAll()
				if err != nil {
					return err
				}
				for _, snap := range snaps {
					k := watermark.Key{ChainID: chainRef.ID, PKH: snap.Ref.ID, Kind: kindRef.ID}
					if err := k.Validate(); err != nil {
						return domain.Errorf(domain.KindInternal, "firestore watermark: document %s: %v", snap.Ref.Path, err)
					}
					m, err := decode(snap)
					if err != nil {
						return err
					}
					out = append(out, watermark.Record{Key: k, Mark: m})
				}
			}
		}
	})
	if err != nil {
		return nil, s.fail(ctx, "export", err)
	}
	return out, nil
}

// Import raises marks to recs, one transaction per record. All records are
// validated before anything is written.
func (s *Store) Import(ctx context.Context, recs []watermark.Record) error {
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for _, r := range recs {
		unlock, err := s.keys.Lock(ctx, r.Key)
		if err != nil {
			return err
		}
		ref := s.doc(r.Key)
		var kept watermark.Mark
		err = s.do(ctx, func(ctx context.Context) error {
			return s.client.RunTransaction(ctx, func(ctx context.Context, tx *gfs.Transaction) error {
				recorded, err := getMark(tx, ref)
				if err != nil {
					return err
				}
				m, changed := watermark.Raise(recorded, r.Mark)
				kept = m
				if !changed {
					return nil
				}
				return tx.Set(ref, fields(r.Key, m))
			}, gfs.MaxAttempts(txAttempts))
		})
		unlock()
		if err != nil {
			return s.fail(ctx, "import "+r.Key.String(), err)
		}
		s.keys.Remember(r.Key, kept)
	}
	return nil
}

// do runs f, retrying transient failures with capped exponential backoff and
// full jitter until it succeeds, fails for good, the attempts run out or ctx
// ends. Retrying a commit whose outcome is unknown is safe: if it was
// recorded, the retry reads it back as an identical replay.
func (s *Store) do(ctx context.Context, f func(context.Context) error) error {
	return gcpretry.Do(ctx, s.retry, nil, f)
}

// fail wraps a failed operation's error; domain errors pass through.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	if gcpretry.Transient(err) || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return domain.Errorf(domain.KindUnavailable, "firestore watermark: %s: %s: %w", s.where, op, err)
	}
	return fmt.Errorf("firestore watermark: %s: %s: %w", s.where, op, err)
}

// Driver is the `gcp`/`firestore` backend's watermark.Opener.
func Driver(ctx context.Context, decode func(any) error, env wm.Env) (ports.WatermarkStore, error) {
	cfg, err := driverConfig(decode)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.rec = env.Recorder("gcp", s.col.ID)
	return s, nil
}

// Check is the `gcp`/`firestore` backend's watermark.Checker: the section is
// validated as Driver reads it, and no client is created.
func Check(decode func(any) error, _ wm.Env) error {
	cfg, err := driverConfig(decode)
	if err != nil {
		return err
	}
	_, _, _, err = cfg.resolve()
	return err
}

func driverConfig(decode func(any) error) (Config, error) {
	var cfg Config
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return Config{}, domain.Errorf(domain.KindInvalid, "firestore watermark: invalid config: %v", err)
		}
	}
	return cfg, nil
}

// Location names where the marks are (project, database, collection).
func (s *Store) Location() string { return s.where }
