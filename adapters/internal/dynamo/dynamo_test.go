package dynamo

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/internal/retry"
	"github.com/sigil-signer/sigil/domain"
)

// fakeTables is a TableAPI whose answers the test scripts.
type fakeTables struct {
	mu        sync.Mutex
	describe  []func() (*dynamodb.DescribeTableOutput, error) // consumed in order; the last repeats
	createErr error
	created   *dynamodb.CreateTableInput
}

func (f *fakeTables) DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.describe[0]
	if len(f.describe) > 1 {
		f.describe = f.describe[1:]
	}
	return next()
}

func (f *fakeTables) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = in
	return &dynamodb.CreateTableOutput{}, f.createErr
}

func apiErr(code string) error { return &smithy.GenericAPIError{Code: code, Message: code} }

func table(status types.TableStatus, hash, rng string) func() (*dynamodb.DescribeTableOutput, error) {
	d := &types.TableDescription{
		TableStatus:          status,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(hash), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash}},
	}
	if rng != "" {
		d.AttributeDefinitions = append(d.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(rng), AttributeType: types.ScalarAttributeTypeS})
		d.KeySchema = append(d.KeySchema, types.KeySchemaElement{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange})
	}
	return func() (*dynamodb.DescribeTableOutput, error) { return &dynamodb.DescribeTableOutput{Table: d}, nil }
}

func fails(err error) func() (*dynamodb.DescribeTableOutput, error) {
	return func() (*dynamodb.DescribeTableOutput, error) { return nil, err }
}

var testPolicy = retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Attempts: 3}

type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) observe(op string, _ time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := ErrorType(err); t != "" {
		op += ":" + t
	}
	l.ops = append(l.ops, op)
}

func TestEnsureTableCreates(t *testing.T) {
	f := &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){
		fails(&types.ResourceNotFoundException{Message: aws.String("no table")}),
		table(types.TableStatusCreating, "idx", "request"),
		table(types.TableStatusActive, "idx", "request"),
	}}
	var log opLog
	var logs bytes.Buffer
	call := Caller{Policy: testPolicy, Observe: log.observe}
	err := EnsureTable(context.Background(), f, call, Table{Name: "wm", Hash: "idx", Range: "request", PollInterval: time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Equal(t, []string{"read:not_found", "create", "read", "read"}, log.ops, "describe, create, wait until ACTIVE")
	require.NotNil(t, f.created)
	assert.Equal(t, "wm", aws.ToString(f.created.TableName))
	assert.Equal(t, types.BillingModePayPerRequest, f.created.BillingMode)
	assert.Equal(t, []types.KeySchemaElement{
		{AttributeName: aws.String("idx"), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String("request"), KeyType: types.KeyTypeRange},
	}, f.created.KeySchema)
	assert.Contains(t, logs.String(), "DynamoDB table created")
}

// TestEnsureTableNotYetVisible: a table just created may not be visible to
// DescribeTable at once; EnsureTable keeps polling instead of failing.
func TestEnsureTableNotYetVisible(t *testing.T) {
	f := &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){
		fails(&types.ResourceNotFoundException{}),
		fails(&types.ResourceNotFoundException{}),
		table(types.TableStatusActive, "pkh", ""),
	}}
	err := EnsureTable(context.Background(), f, Caller{Policy: testPolicy}, Table{Name: "keys", Hash: "pkh", PollInterval: time.Millisecond}, nil)
	require.NoError(t, err)
	require.NotNil(t, f.created)
}

// TestEnsureTableRace: another daemon creates the table at the same time;
// the loser waits for it to become ACTIVE.
func TestEnsureTableRace(t *testing.T) {
	f := &fakeTables{
		describe: []func() (*dynamodb.DescribeTableOutput, error){
			fails(&types.ResourceNotFoundException{}),
			table(types.TableStatusCreating, "pkh", ""),
			table(types.TableStatusActive, "pkh", ""),
		},
		createErr: &types.ResourceInUseException{Message: aws.String("being created")},
	}
	err := EnsureTable(context.Background(), f, Caller{Policy: testPolicy}, Table{Name: "keys", Hash: "pkh", PollInterval: time.Millisecond}, nil)
	require.NoError(t, err)
}

// TestEnsureTableNoDescribe: without dynamodb:DescribeTable the table is
// assumed to exist (least privilege), with a warning.
func TestEnsureTableNoDescribe(t *testing.T) {
	f := &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){fails(apiErr("AccessDeniedException"))}}
	var logs bytes.Buffer
	err := EnsureTable(context.Background(), f, Caller{Policy: testPolicy}, Table{Name: "keys", Hash: "pkh"}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Nil(t, f.created, "no creation attempted")
	assert.Contains(t, logs.String(), "assuming it exists")
}

func TestEnsureTableErrors(t *testing.T) {
	f := &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){table(types.TableStatusActive, "pkh", "")}}
	err := EnsureTable(context.Background(), f, Caller{Policy: testPolicy}, Table{Name: "wm", Hash: "idx", Range: "request", What: "w", Where: "table wm"}, nil)
	require.Error(t, err)
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	assert.Contains(t, err.Error(), "w: table wm: the table's key schema is hash key pkh (S), want hash key idx (S), range key request (S)")

	// Creation refused (no dynamodb:CreateTable): a clear error.
	f = &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){fails(&types.ResourceNotFoundException{})}, createErr: apiErr("AccessDeniedException")}
	err = EnsureTable(context.Background(), f, Caller{Policy: testPolicy}, Table{Name: "wm", Hash: "idx", What: "w", Where: "table wm"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "create table")
	assert.Contains(t, err.Error(), "AccessDeniedException")

	// Unreachable: unavailable after the policy's attempts.
	unreachable := &smithyRequestSendError{}
	f = &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){fails(unreachable)}}
	err = EnsureTable(context.Background(), f, Caller{Policy: testPolicy}, Table{Name: "wm", Hash: "idx", What: "w", Where: "table wm"}, nil)
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	assert.Contains(t, err.Error(), "DynamoDB unavailable (3 attempts)")

	// A table that never becomes ACTIVE: bounded by the context.
	f = &fakeTables{describe: []func() (*dynamodb.DescribeTableOutput, error){table(types.TableStatusCreating, "idx", "")}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = EnsureTable(ctx, f, Caller{Policy: testPolicy}, Table{Name: "wm", Hash: "idx", What: "w", Where: "table wm", PollInterval: time.Millisecond}, nil)
	require.Error(t, err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
}

// smithyRequestSendError is a connection failure as the SDK reports it.
type smithyRequestSendError struct{}

func (*smithyRequestSendError) Error() string         { return "request send failed: connection refused" }
func (*smithyRequestSendError) ConnectionError() bool { return true }

// TestCallerAttemptTimeout: an attempt that hangs is cut by the attempt
// bound and retried while the caller's context is live.
func TestCallerAttemptTimeout(t *testing.T) {
	var log opLog
	c := Caller{Policy: testPolicy, AttemptTimeout: 20 * time.Millisecond, Observe: log.observe}
	calls := 0
	err := c.Do(context.Background(), "write", func(ctx context.Context) error {
		calls++
		if calls == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
	assert.Equal(t, []string{"write:unavailable", "write"}, log.ops)

	// Attempts run out: the error says how many were made.
	err = c.Do(context.Background(), "read", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 3, ce.Attempts)
	fe := Fail(context.Background(), "w", "table t", "read x", err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(fe))
	assert.Contains(t, fe.Error(), "DynamoDB unavailable (3 attempts)")

	// The caller's own deadline is not retried.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	calls = 0
	err = Caller{Policy: testPolicy, AttemptTimeout: time.Second}.Do(ctx, "read", func(ctx context.Context) error { calls++; <-ctx.Done(); return ctx.Err() })
	assert.Equal(t, 1, calls)
	assert.Contains(t, Fail(ctx, "w", "table t", "read", err).Error(), "no answer from DynamoDB before the deadline")
}

func TestErrorTypeAndFail(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		err      error
		typ      string
		kind     domain.Kind
		contains string
	}{
		{&types.ConditionalCheckFailedException{}, "conflict", domain.KindInternal, "DynamoDB error"},
		{&types.ProvisionedThroughputExceededException{}, "throttled", domain.KindUnavailable, "throttled"},
		{&smithyRequestSendError{}, "unavailable", domain.KindUnavailable, "DynamoDB unavailable (1 attempt)"},
		{apiErr("UnrecognizedClientException"), "denied", domain.KindUnavailable, "refused the credentials"},
		{&types.ResourceNotFoundException{}, "not_found", domain.KindInternal, "DynamoDB error"},
		{apiErr("ValidationException"), "other", domain.KindInternal, "DynamoDB error"},
	} {
		assert.Equal(t, c.typ, ErrorType(c.err), "%v", c.err)
		fe := Fail(ctx, "dynamodb watermark", "table t, region r", "commit k", c.err)
		assert.Equal(t, c.kind, domain.KindOf(fe), "%v", fe)
		assert.Contains(t, fe.Error(), "dynamodb watermark: table t, region r: commit k: ")
		assert.Contains(t, fe.Error(), c.contains)
		assert.True(t, errors.Is(fe, c.err), "the cause stays inspectable")
	}
	de := domain.Errorf(domain.KindConflict, "refused")
	assert.Equal(t, de, Fail(ctx, "w", "t", "op", de), "domain errors pass through")
}

func TestTableName(t *testing.T) {
	n, err := Config{}.TableName("w", "watermark")
	assert.NoError(t, err)
	assert.Equal(t, "watermark", n)
	n, err = Config{Table: "My_table-1.x"}.TableName("w", "watermark")
	assert.NoError(t, err)
	assert.Equal(t, "My_table-1.x", n)
	for _, bad := range []string{"ab", "a/b", "tab le", strings.Repeat("x", 256)} {
		_, err := Config{Table: bad}.TableName("w", "d")
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), bad)
	}
}

// writeJSON answers as DynamoDB does, with the CRC32 of the body.
func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// TestNewClientEndpointAndCredentials checks, against a local HTTP server
// standing in for DynamoDB, that the client honours the SDK's standard
// AWS_ENDPOINT_URL_DYNAMODB (and AWS_ENDPOINT_URL) and signs with the
// static credentials and region of the config section.
func TestNewClientEndpointAndCredentials(t *testing.T) {
	type seen struct{ target, auth string }
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Header.Get("X-Amz-Target"), r.Header.Get("Authorization")})
		mu.Unlock()
		writeJSON(w, http.StatusOK, `{"TableNames":[]}`)
	}))
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_REGION", "us-west-2")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

	for _, env := range []string{"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "")
			t.Setenv("AWS_ENDPOINT_URL", "")
			t.Setenv(env, srv.URL)
			got = nil
			ctx := context.Background()
			c, region, err := NewClient(ctx, Config{Region: "eu-central-1", AccessKeyID: "AKIDFROMCONFIG", SecretAccessKey: "s"}, "w", nil)
			require.NoError(t, err)
			assert.Equal(t, "eu-central-1", region)
			_, err = c.ListTables(ctx, &dynamodb.ListTablesInput{})
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, "DynamoDB_20120810.ListTables", got[0].target)
			assert.Contains(t, got[0].auth, "Credential=AKIDFROMCONFIG/", "static keys of the config win")
			assert.Contains(t, got[0].auth, "/eu-central-1/dynamodb/")

			// Without keys and region in the config: the SDK's defaults.
			got = nil
			c, region, err = NewClient(ctx, Config{}, "w", nil)
			require.NoError(t, err)
			assert.Equal(t, "us-west-2", region)
			_, err = c.ListTables(ctx, &dynamodb.ListTablesInput{})
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Contains(t, got[0].auth, "Credential=AKIDFROMENV/")
		})
	}
}

// TestNoSDKRetries: the client makes one attempt per call (retries are
// Caller's), even against a failing server.
func TestNoSDKRetries(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"down"}`)
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", srv.URL)
	c, _, err := NewClient(context.Background(), Config{Region: "us-east-1", AccessKeyID: "a", SecretAccessKey: "b"}, "w", nil)
	require.NoError(t, err)
	_, err = c.ListTables(context.Background(), &dynamodb.ListTablesInput{})
	require.Error(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "unavailable", ErrorType(err))
}
