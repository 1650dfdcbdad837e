// Package firestore is the "firestore" (alias "gcp") key storage driver:
// sealed key blobs kept in a Google Cloud Firestore collection, one document
// per key, keyed by the tz address, with the fields pkh (string) and value
// (bytes), as Signatory stores them. List pages through the collection in
// document-id order so that large collections work; transient errors are
// retried with capped exponential backoff and jitter, bounded by the
// caller's context. FIRESTORE_EMULATOR_HOST is honoured (no credentials are
// needed then). ClientOptions turns the credential fields into GCP client
// options for other Firestore-backed adapters.
package firestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/gcpretry"

	gfs "cloud.google.com/go/firestore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultCollection is the collection used when none is configured.
const DefaultCollection = "encrypted_keys"

// Field names of a key document.
const (
	FieldPKH   = "pkh"
	FieldValue = "value"
)

// Config is the driver's config section.
type Config struct {
	// Project is the GCP project id (required).
	Project string `yaml:"project"`
	// Database is the Firestore database id, e.g. "(default)" (required).
	Database string `yaml:"database"`
	// Table is the collection name (default "encrypted_keys"); the name
	// Signatory's documentation uses.
	Table string `yaml:"table"`
	// Collection is accepted as an alias of Table (the name Signatory's
	// code reads). If both are set they must be equal.
	Collection string `yaml:"collection"`
	// ApplicationCredentials is the path of a GCP credentials JSON file; it
	// overrides GOOGLE_APPLICATION_CREDENTIALS.
	ApplicationCredentials string `yaml:"application_credentials"`
	// ApplicationCredentialsData is GCP credentials JSON; it overrides
	// ApplicationCredentials.
	ApplicationCredentialsData string `yaml:"application_credentials_data"`
}

// CollectionName validates c and returns the collection to use.
func (c Config) CollectionName() (string, error) {
	if strings.TrimSpace(c.Project) == "" {
		return "", domain.Errorf(domain.KindInvalid, "firestore key storage: missing required field project")
	}
	if strings.TrimSpace(c.Database) == "" {
		return "", domain.Errorf(domain.KindInvalid, "firestore key storage: missing required field database")
	}
	name := c.Table
	switch {
	case c.Table != "" && c.Collection != "" && c.Table != c.Collection:
		return "", domain.Errorf(domain.KindInvalid, "firestore key storage: table %q and collection %q disagree (collection is an alias of table; set one)", c.Table, c.Collection)
	case name == "":
		name = c.Collection
	}
	if name == "" {
		name = DefaultCollection
	}
	if strings.Contains(name, "/") {
		return "", domain.Errorf(domain.KindInvalid, "firestore key storage: table %q must be a collection id, without '/'", name)
	}
	return name, nil
}

// ClientOptions returns the GCP client options for the credential fields:
// appCredsData (credentials JSON) wins over appCreds (a credentials file),
// and with neither the SDK's defaults apply (GOOGLE_APPLICATION_CREDENTIALS,
// then the metadata server). When FIRESTORE_EMULATOR_HOST is set no
// credentials are used at all and nil is returned. The credential type is
// read from the JSON's "type" field; errors never quote the credentials.
func ClientOptions(appCreds, appCredsData string) ([]option.ClientOption, error) {
	if os.Getenv("FIRESTORE_EMULATOR_HOST") != "" {
		return nil, nil
	}
	if appCredsData != "" {
		t, err := credentialsType([]byte(appCredsData))
		if err != nil {
			return nil, domain.Errorf(domain.KindInvalid, "application_credentials_data: %v", err)
		}
		return []option.ClientOption{option.WithAuthCredentialsJSON(t, []byte(appCredsData))}, nil
	}
	if appCreds != "" {
		data, err := os.ReadFile(appCreds)
		if err != nil {
			return nil, domain.Errorf(domain.KindInvalid, "application_credentials: cannot read %s: %v", appCreds, errors.Unwrap(err))
		}
		t, err := credentialsType(data)
		if err != nil {
			return nil, domain.Errorf(domain.KindInvalid, "application_credentials %s: %v", appCreds, err)
		}
		return []option.ClientOption{option.WithAuthCredentialsFile(t, appCreds)}, nil
	}
	return nil, nil
}

func credentialsType(data []byte) (option.CredentialsType, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return "", errors.New("not valid credentials JSON")
	}
	switch t := option.CredentialsType(head.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ImpersonatedServiceAccount, option.ExternalAccount:
		return t, nil
	case "":
		return "", errors.New(`credentials JSON has no "type" field`)
	default:
		return "", fmt.Errorf("unsupported credentials type %q (want service_account, authorized_user, impersonated_service_account or external_account)", head.Type)
	}
}

var defaultRetry = gcpretry.Policy{Initial: 100 * time.Millisecond, Max: 3 * time.Second, Attempts: 8}

// Store is a key store on one Firestore collection. It is safe for
// concurrent use. Close releases the client. List and Put give up when their
// context ends, or after DefaultOperationTimeout if it has no deadline.
type Store struct {
	client   *gfs.Client
	col      *gfs.CollectionRef
	where    string // "project p, database d, collection c" for errors
	log      *slog.Logger
	pageSize int
	retry    gcpretry.Policy
	opLimit  time.Duration // bound of a List or Put whose ctx has no deadline
}

// DefaultOperationTimeout bounds a List or Put called with a context that
// has no deadline, so that an outage cannot hang the caller forever (the SDK
// itself retries queries without limit).
const DefaultOperationTimeout = 30 * time.Second

// bound gives ctx a deadline if it has none.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || s.opLimit <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opLimit)
}

// New connects to the collection cfg describes. It does not contact the
// server; the first List or Put does.
func New(ctx context.Context, cfg Config) (*Store, error) {
	name, err := cfg.CollectionName()
	if err != nil {
		return nil, err
	}
	opts, err := ClientOptions(cfg.ApplicationCredentials, cfg.ApplicationCredentialsData)
	if err != nil {
		return nil, fmt.Errorf("firestore key storage: %w", err)
	}
	// Reconnect quickly after an outage: gRPC's default reconnect backoff
	// grows to two minutes. (Ignored with the emulator, whose connection
	// the SDK dials itself.)
	opts = append(opts, option.WithGRPCDialOption(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
		MinConnectTimeout: 10 * time.Second,
	})))
	client, err := gfs.NewClientWithDatabase(ctx, cfg.Project, cfg.Database, opts...)
	if err != nil {
		return nil, domain.Errorf(domain.KindUnavailable, "firestore key storage: create client for project %s, database %s: %w", cfg.Project, cfg.Database, err)
	}
	return &Store{
		client:   client,
		col:      client.Collection(name),
		where:    fmt.Sprintf("project %s, database %s, collection %s", cfg.Project, cfg.Database, name),
		log:      slog.New(slog.DiscardHandler),
		pageSize: 300,
		retry:    defaultRetry,
		opLimit:  DefaultOperationTimeout,
	}, nil
}

// Open is the driver's storage.Opener; the config section decodes into
// Config and is required (project and database have no defaults).
func Open(ctx context.Context, decode func(any) error, env storage.Env) (ports.KeyStore, error) {
	cfg, err := decodeConfig(decode)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.log = storage.LoggerOf(env)
	return s, nil
}

// Check is the driver's storage.Checker: the section is decoded and
// validated as Open does (project, database, collection name, credentials
// file or data), and no client is created.
func Check(decode func(any) error, _ storage.Env) error {
	cfg, err := decodeConfig(decode)
	if err != nil {
		return err
	}
	if _, err := cfg.CollectionName(); err != nil {
		return err
	}
	if _, err := ClientOptions(cfg.ApplicationCredentials, cfg.ApplicationCredentialsData); err != nil {
		return fmt.Errorf("firestore key storage: %w", err)
	}
	return nil
}

func decodeConfig(decode func(any) error) (Config, error) {
	if decode == nil {
		return Config{}, domain.Errorf(domain.KindInvalid, "firestore key storage: missing config section (project and database are required)")
	}
	var cfg Config
	if err := decode(&cfg); err != nil {
		return Config{}, domain.Errorf(domain.KindInvalid, "firestore key storage: invalid config: %v", err)
	}
	return cfg, nil
}

var (
	_ storage.Opener  = Open
	_ storage.Checker = Check
)

// Close releases the Firestore client.
func (s *Store) Close() error { return s.client.Close() }

// Put stores k as the document named by its address (a Set, so an existing
// key is replaced).
func (s *Store) Put(ctx context.Context, k ports.StoredKey) error {
	pkh, err := tezos.ParsePublicKeyHash(k.PKH)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "firestore key storage: put: %v", err)
	}
	if len(k.Blob) == 0 {
		return domain.Errorf(domain.KindInvalid, "firestore key storage: put %s: empty encrypted key", k.PKH)
	}
	addr := pkh.String()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	doc := map[string]any{FieldPKH: addr, FieldValue: append([]byte(nil), k.Blob...)}
	err = s.do(ctx, func(ctx context.Context) error {
		_, err := s.col.Doc(addr).Set(ctx, doc)
		return err
	})
	if err != nil {
		return s.fail(ctx, "put "+addr, err)
	}
	s.log.Debug("stored sealed key", "pkh", addr, "store", s.where)
	return nil
}

// List returns every key of the collection, reading it page by page in
// document-id order. A malformed document is an error naming it. Documents
// whose id is not a tz address (Signatory before it keyed documents by
// address used generated ids) are accepted on their pkh field; a document
// keyed by the address wins over such a legacy one.
func (s *Store) List(ctx context.Context) ([]ports.StoredKey, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var (
		out    []ports.StoredKey
		index  = map[string]int{}
		keyed  = map[string]bool{}
		last   *gfs.DocumentSnapshot
		nPages int
	)
	for {
		q := s.col.OrderBy(gfs.DocumentID, gfs.Asc).Limit(s.pageSize)
		if last != nil {
			q = q.StartAfter(last)
		}
		var page []*gfs.DocumentSnapshot
		err := s.do(ctx, func(ctx context.Context) error {
			var err error
			page, err = q.Documents(ctx).GetAll()
			return err
		})
		if err != nil {
			return nil, s.fail(ctx, fmt.Sprintf("list (page %d)", nPages+1), err)
		}
		nPages++
		for _, d := range page {
			k, byAddr, err := decodeDoc(d)
			if err != nil {
				return nil, fmt.Errorf("firestore key storage: %s: document %s/%s: %w", s.where, s.col.ID, d.Ref.ID, err)
			}
			if !byAddr {
				s.log.Debug("document with a generated id", "id", d.Ref.ID, "pkh", k.PKH)
			}
			if i, dup := index[k.PKH]; dup {
				if byAddr || !keyed[k.PKH] {
					out[i] = k
				}
				keyed[k.PKH] = keyed[k.PKH] || byAddr
				continue
			}
			index[k.PKH] = len(out)
			keyed[k.PKH] = byAddr
			out = append(out, k)
		}
		if len(page) < s.pageSize {
			return out, nil
		}
		last = page[len(page)-1]
	}
}

// decodeDoc validates one key document. byAddr reports whether the
// document id is the address.
func decodeDoc(d *gfs.DocumentSnapshot) (k ports.StoredKey, byAddr bool, err error) {
	data := d.Data()
	rawPKH, ok := data[FieldPKH]
	if !ok {
		return k, false, fmt.Errorf("missing field %s", FieldPKH)
	}
	addr, ok := rawPKH.(string)
	if !ok {
		return k, false, fmt.Errorf("field %s is a %T, want a string", FieldPKH, rawPKH)
	}
	pkh, err := tezos.ParsePublicKeyHash(addr)
	if err != nil {
		return k, false, fmt.Errorf("field %s: %v", FieldPKH, err)
	}
	rawValue, ok := data[FieldValue]
	if !ok {
		return k, false, fmt.Errorf("missing field %s", FieldValue)
	}
	blob, ok := rawValue.([]byte)
	if !ok {
		return k, false, fmt.Errorf("field %s is a %T, want bytes", FieldValue, rawValue)
	}
	if len(blob) == 0 {
		return k, false, fmt.Errorf("field %s is empty", FieldValue)
	}
	id := d.Ref.ID
	if idPKH, err := tezos.ParsePublicKeyHash(id); err == nil {
		if idPKH != pkh {
			return k, false, fmt.Errorf("field %s is %s but the document id is another address", FieldPKH, pkh)
		}
		byAddr = true
	}
	return ports.StoredKey{PKH: pkh.String(), Blob: blob}, byAddr, nil
}

// do runs f, retrying transient failures with capped exponential backoff and
// full jitter until it succeeds, fails for good, the attempts run out or ctx
// ends.
func (s *Store) do(ctx context.Context, f func(context.Context) error) error {
	return gcpretry.Do(ctx, s.retry, func(attempt int, wait time.Duration, err error) {
		s.log.Debug("transient Firestore error, retrying", "store", s.where, "attempt", attempt, "wait", wait, "error", err)
	}, f)
}

// fail wraps a failed operation's error: unavailable when the backend could
// not be reached in time, internal otherwise.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return domain.Errorf(domain.KindUnavailable, "firestore key storage: %s: %s: no answer from Firestore before the deadline or cancellation (unreachable or overloaded?): %w", s.where, op, err)
	}
	if gcpretry.Transient(err) {
		return domain.Errorf(domain.KindUnavailable, "firestore key storage: %s: %s: Firestore unavailable after %d attempts: %w", s.where, op, s.retry.Attempts, err)
	}
	return fmt.Errorf("firestore key storage: %s: %s: %w", s.where, op, err)
}
