// Package dynamodb is the "aws" (alias "dynamodb") key storage driver:
// sealed key blobs kept in a DynamoDB table, one item per key, in the layout
// of Signatory's Nitro vault: hash key pkh (the tz address, a string) and
// the attribute value (the sealed blob, binary). The table (default
// encrypted_keys) is created when absent. Put is one PutItem (replacing an
// existing key, never duplicating it); List pages through a strongly
// consistent Scan. Every call is retried on transient errors under the
// awsretry discipline and bounded in time. Credentials and region come from
// the config section (Signatory's fields) or the SDK's defaults, and
// AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL point it at another endpoint.
package dynamodb

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sigil-signer/sigil/adapters/internal/dynamo"
	"github.com/sigil-signer/sigil/adapters/internal/retry"
	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultTable is the table used when none is configured (Signatory's).
const DefaultTable = "encrypted_keys"

// Attribute names of a key item; PKH is the hash key.
const (
	AttrPKH   = "pkh"
	AttrValue = "value"
)

// Config is the driver's config section, as Signatory's: table, region,
// access_key_id, secret_access_key, session_token.
type Config = dynamo.Config

const what = "dynamodb key storage"

var defaultRetry = retry.Policy{Initial: 100 * time.Millisecond, Max: 3 * time.Second, Attempts: 8}

const (
	// attemptTimeout bounds one DynamoDB call; a call cut by it is retried.
	attemptTimeout = 10 * time.Second
	// DefaultOperationTimeout bounds a List or Put (or opening) whose
	// context has no deadline.
	DefaultOperationTimeout = 60 * time.Second
)

// API is the part of the DynamoDB client the store uses.
type API interface {
	dynamo.TableAPI
	PutItem(ctx context.Context, in *ddb.PutItemInput, opts ...func(*ddb.Options)) (*ddb.PutItemOutput, error)
	Scan(ctx context.Context, in *ddb.ScanInput, opts ...func(*ddb.Options)) (*ddb.ScanOutput, error)
}

// Store is a key store on one DynamoDB table. It is safe for concurrent
// use.
type Store struct {
	api      API
	table    string
	where    string // "table T, region R"
	log      *slog.Logger
	call     dynamo.Caller
	pageSize int32 // Scan page limit; 0: DynamoDB's (1 MB)
	opLimit  time.Duration
}

var _ ports.KeyStore = (*Store)(nil)

// New connects to the table cfg names, creating it when absent.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	client, table, region, err := dynamo.Connect(ctx, cfg, what, DefaultTable, log)
	if err != nil {
		return nil, err
	}
	return newStore(ctx, client, table, region, log)
}

func newStore(ctx context.Context, api API, table, region string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		api:     api,
		table:   table,
		where:   fmt.Sprintf("table %s, region %s", table, region),
		log:     log,
		opLimit: DefaultOperationTimeout,
	}
	s.call = dynamo.Caller{Policy: defaultRetry, AttemptTimeout: attemptTimeout, Log: log, Where: s.where}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := dynamo.EnsureTable(ctx, api, s.call, dynamo.Table{Name: table, Hash: AttrPKH, What: what, Where: s.where}, log); err != nil {
		return nil, err
	}
	return s, nil
}

// Open is the driver's storage.Opener. The config section is optional:
// without it the table is encrypted_keys and credentials and region come
// from the SDK's defaults.
func Open(ctx context.Context, decode func(any) error, env storage.Env) (ports.KeyStore, error) {
	cfg, err := dynamo.DecodeConfig(decode, what)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg, storage.LoggerOf(env))
}

// Check is the driver's storage.Checker: the section is validated as Open
// reads it, without creating a client or contacting AWS.
func Check(decode func(any) error, _ storage.Env) error {
	return dynamo.CheckSection(decode, what, DefaultTable)
}

var (
	_ storage.Opener  = Open
	_ storage.Checker = Check
)

// bound gives ctx a deadline if it has none.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || s.opLimit <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opLimit)
}

// Put stores k as the item keyed by its address, replacing any earlier
// one.
func (s *Store) Put(ctx context.Context, k ports.StoredKey) error {
	pkh, err := tezos.ParsePublicKeyHash(k.PKH)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "%s: put: %v", what, err)
	}
	if len(k.Blob) == 0 {
		return domain.Errorf(domain.KindInvalid, "%s: put %s: empty encrypted key", what, k.PKH)
	}
	addr := pkh.String()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	in := &ddb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			AttrPKH:   &types.AttributeValueMemberS{Value: addr},
			AttrValue: &types.AttributeValueMemberB{Value: append([]byte(nil), k.Blob...)},
		},
	}
	err = s.call.Do(ctx, "write", func(ctx context.Context) error {
		_, err := s.api.PutItem(ctx, in)
		return err
	})
	if err != nil {
		return dynamo.Fail(ctx, what, s.where, "put "+addr, err)
	}
	s.log.Debug("stored sealed key", "pkh", addr, "store", s.where)
	return nil
}

// List returns every key of the table, page by page. A malformed item is
// an error naming it.
func (s *Store) List(ctx context.Context) ([]ports.StoredKey, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var out []ports.StoredKey
	in := &ddb.ScanInput{TableName: aws.String(s.table)}
	if s.pageSize > 0 {
		in.Limit = aws.Int32(s.pageSize)
	}
	err := dynamo.ScanAll(ctx, s.api, s.call, in, what, s.where, "list", func(it map[string]types.AttributeValue) error {
		k, err := decodeItem(it)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", what, s.where, err)
		}
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// decodeItem validates one key item.
func decodeItem(it map[string]types.AttributeValue) (ports.StoredKey, error) {
	raw, ok := it[AttrPKH].(*types.AttributeValueMemberS)
	if !ok {
		return ports.StoredKey{}, fmt.Errorf("an item's attribute %s is not a string", AttrPKH)
	}
	pkh, err := tezos.ParsePublicKeyHash(raw.Value)
	if err != nil {
		return ports.StoredKey{}, fmt.Errorf("item %q: attribute %s: %v", raw.Value, AttrPKH, err)
	}
	switch v := it[AttrValue].(type) {
	case nil:
		return ports.StoredKey{}, fmt.Errorf("item %s: missing attribute %s", raw.Value, AttrValue)
	case *types.AttributeValueMemberB:
		if len(v.Value) == 0 {
			return ports.StoredKey{}, fmt.Errorf("item %s: attribute %s is empty", raw.Value, AttrValue)
		}
		return ports.StoredKey{PKH: pkh.String(), Blob: v.Value}, nil
	default:
		return ports.StoredKey{}, fmt.Errorf("item %s: attribute %s is a %T, want binary", raw.Value, AttrValue, v)
	}
}
