package dynamodb

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/ports"
)

// TestMain stops the shared dynalite when the tests end.
func TestMain(m *testing.M) { harness.Main(m) }

// dynalite points the AWS SDK of the test process at the shared dynalite.
func dynalite(t testing.TB) *harness.Dynalite {
	d := harness.StartDynalite(t)
	d.SetEnv(t)
	return d
}

func newStore(t testing.TB, cfg Config, env wm.Env) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg, env)
	require.NoError(t, err)
	return s
}

func TestContract(t *testing.T) {
	d := dynalite(t)
	watermarktest.Run(t, func(t testing.TB) ports.WatermarkStore {
		return newStore(t, Config{Table: d.NewTable(t)}, wm.Env{})
	})
}

// TestTwoInstances runs the concurrency tests across two stores with
// separate clients sharing one table, as two daemons do.
func TestTwoInstances(t *testing.T) {
	d := dynalite(t)
	cfg := Config{Table: d.NewTable(t)}
	a, b := newStore(t, cfg, wm.Env{}), newStore(t, cfg, wm.Env{})
	t.Run("Concurrent", func(t *testing.T) { watermarktest.Concurrent(t, a, b) })
	t.Run("ConcurrentReplay", func(t *testing.T) { watermarktest.ConcurrentReplay(t, a, b) })
	t.Run("SeesOther", func(t *testing.T) { watermarktest.SeesOther(t, a, b) })
	t.Run("StaleState", func(t *testing.T) {
		// a knows the item at level 5; b raises it to 6 behind a's back.
		// a's next write at 6 (another digest) fails its condition, and a
		// refuses instead of overwriting b's mark.
		ctx := context.Background()
		k := watermarktest.Key(watermarktest.Ghostnet, watermark.KindAttestation)
		_, err := a.Commit(ctx, k, watermarktest.M(5, 0, 1, "a5"))
		require.NoError(t, err)
		_, err = b.Commit(ctx, k, watermarktest.M(6, 0, 2, "b6"))
		require.NoError(t, err)
		_, err = a.Commit(ctx, k, watermarktest.M(6, 0, 3, "a6"))
		assert.Equal(t, domain.KindConflict, domain.KindOf(err), "%v", err)
		got, err := a.Commit(ctx, k, watermarktest.M(6, 0, 2, "again"))
		require.NoError(t, err)
		assert.Equal(t, watermarktest.Sig("b6"), got.Signature)
	})
}

// rawItem reads k's item straight from dynalite.
func rawItem(t *testing.T, d *harness.Dynalite, table string, k watermark.Key) map[string]types.AttributeValue {
	t.Helper()
	out, err := d.Client().GetItem(context.Background(), &ddb.GetItemInput{TableName: aws.String(table), Key: itemKey(k)})
	require.NoError(t, err)
	return out.Item
}

// TestLayout checks Signatory's table layout: key schema and attributes.
func TestLayout(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	s := newStore(t, Config{Table: table}, wm.Env{})
	desc, err := d.Client().DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(table)})
	require.NoError(t, err)
	assert.ElementsMatch(t, []types.KeySchemaElement{
		{AttributeName: aws.String("idx"), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String("request"), KeyType: types.KeyTypeRange},
	}, desc.Table.KeySchema)

	k := watermarktest.Key(watermarktest.Ghostnet, watermark.KindPreattestation)
	m := watermarktest.M(77, 3, 0xcd, "BLsigX")
	_, err = s.Commit(ctx, k, m)
	require.NoError(t, err)
	assert.Equal(t, map[string]types.AttributeValue{
		"idx":       &types.AttributeValueMemberS{Value: watermarktest.Ghostnet + "/" + k.PKH},
		"request":   &types.AttributeValueMemberS{Value: "preattestation"},
		"lvl":       &types.AttributeValueMemberN{Value: "77"},
		"round":     &types.AttributeValueMemberN{Value: "3"},
		"digest":    &types.AttributeValueMemberB{Value: m.Digest[:]},
		"signature": &types.AttributeValueMemberS{Value: watermarktest.Sig("BLsigX")},
	}, rawItem(t, d, table, k))
}

// TestSignatoryItem reads an item as Signatory writes it (no signature),
// and checks that Signatory's own conditional write (on lvl, round and
// digest) still applies to an item Sigil wrote.
func TestSignatoryItem(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	s := newStore(t, Config{Table: table}, wm.Env{})
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	digest := [32]byte{1, 2, 3}
	_, err := d.Client().PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"idx":     &types.AttributeValueMemberS{Value: k.ChainID + "/" + k.PKH},
		"request": &types.AttributeValueMemberS{Value: "block"},
		"lvl":     &types.AttributeValueMemberN{Value: "10"},
		"round":   &types.AttributeValueMemberN{Value: "1"},
		"digest":  &types.AttributeValueMemberB{Value: digest[:]},
	}})
	require.NoError(t, err)
	// A legacy kind Sigil does not know is skipped by export.
	_, err = d.Client().PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"idx":     &types.AttributeValueMemberS{Value: k.ChainID + "/" + k.PKH},
		"request": &types.AttributeValueMemberS{Value: "endorsement"},
		"lvl":     &types.AttributeValueMemberN{Value: "3"},
		"round":   &types.AttributeValueMemberN{Value: "0"},
		"digest":  &types.AttributeValueMemberB{Value: digest[:]},
	}})
	require.NoError(t, err)

	recs, err := s.Export(ctx)
	require.NoError(t, err)
	require.Equal(t, []watermark.Record{{Key: k, Mark: watermark.Mark{Level: 10, Round: 1, Digest: digest}}}, recs)
	// The very block Signatory signed (its digest) is signed again, and
	// nothing is written.
	again := watermark.Mark{Level: 10, Round: 1, Digest: digest, Signature: watermarktest.Sig("x")}
	got, err := s.Commit(ctx, k, again)
	require.NoError(t, err)
	assert.Equal(t, again, got)
	assert.NotContains(t, rawItem(t, d, table, k), "signature", "the item is still Signatory's")
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 10, Round: 1, Digest: [32]byte{8}, Signature: watermarktest.Sig("x")})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "another block at Signatory's level and round")
	// Signatory recorded the block at its payload round: another block of
	// level 10 may have any fitness round, and is refused.
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 10, Round: 5, Digest: [32]byte{9}, Signature: watermarktest.Sig("sig")})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "a block at the level of Signatory's block mark")
	next := watermark.Mark{Level: 11, Round: 0, Digest: [32]byte{9}, Signature: watermarktest.Sig("sig")}
	_, err = s.Commit(ctx, k, next)
	require.NoError(t, err)

	// Signatory's next write: a PutItem conditioned on the values it read.
	raw := rawItem(t, d, table, k)
	_, err = d.Client().PutItem(ctx, &ddb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]types.AttributeValue{
			"idx": raw["idx"], "request": raw["request"],
			"lvl": &types.AttributeValueMemberN{Value: "12"}, "round": &types.AttributeValueMemberN{Value: "0"},
			"digest": &types.AttributeValueMemberB{Value: make([]byte, 32)},
		},
		ConditionExpression:       aws.String("lvl = :lvl AND round = :round AND digest = :digest"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":lvl": raw["lvl"], ":round": raw["round"], ":digest": raw["digest"]},
	})
	require.NoError(t, err, "Signatory's condition holds on an item Sigil wrote")
	// Sigil, which last saw level 11 round 0, learns of level 12 and refuses
	// a block of that level, whatever its round.
	_, err = s.Commit(ctx, k, watermark.Mark{Level: 12, Round: 3, Digest: [32]byte{7}, Signature: watermarktest.Sig("x")})
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "%v", err)
}

func TestMalformedItem(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	s := newStore(t, Config{Table: table}, wm.Env{})
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	it := itemKey(k)
	it["lvl"] = &types.AttributeValueMemberS{Value: "ten"}
	it["round"] = &types.AttributeValueMemberN{Value: "0"}
	_, err := d.Client().PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(table), Item: it})
	require.NoError(t, err)
	name := k.ChainID + "/" + k.PKH + " block"
	_, err = s.Commit(ctx, k, watermarktest.M(11, 0, 1, "s"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "item "+name+" is malformed: attribute lvl")
	_, err = s.Export(ctx)
	assert.ErrorContains(t, err, name)
}

func TestConfig(t *testing.T) {
	ctx := context.Background()
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"half credentials", Config{AccessKeyID: "AKID", Region: "eu-west-1"}, "access_key_id and secret_access_key go together"},
		{"token alone", Config{SessionToken: "tok", Region: "eu-west-1"}, "session_token needs"},
		{"bad table", Config{Table: "a/b", Region: "eu-west-1"}, `table "a/b" is not a valid DynamoDB table name`},
		{"short table", Config{Table: "ab", Region: "eu-west-1"}, "not a valid DynamoDB table name"},
		{"no region", Config{AccessKeyID: "AKID", SecretAccessKey: "SECRET-KEY-MATERIAL"}, "no AWS region"},
	} {
		_, err := Open(ctx, c.cfg, wm.Env{})
		require.Error(t, err, c.name)
		assert.Equal(t, domain.KindInvalid, domain.KindOf(err), "%s: %v", c.name, err)
		assert.Contains(t, err.Error(), c.want, c.name)
		assert.NotContains(t, err.Error(), "SECRET-KEY-MATERIAL", c.name)
	}
	_, err := Driver(ctx, func(any) error { return assert.AnError }, wm.Env{})
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
}

// TestWrongKeySchema: a table that exists with another key schema (e.g.
// the key storage table) is refused at start with a message saying so.
func TestWrongKeySchema(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	_, err := d.Client().CreateTable(ctx, &ddb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pkh"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pkh"), KeyType: types.KeyTypeHash}},
	})
	require.NoError(t, err)
	_, err = Open(ctx, Config{Table: table}, wm.Env{})
	require.Error(t, err)
	assert.Equal(t, domain.KindInvalid, domain.KindOf(err))
	assert.Contains(t, err.Error(), "the table's key schema is hash key pkh (S), want hash key idx (S), range key request (S)")
}

// TestContextBound: an ended context makes Commit fail as unavailable
// without recording anything.
func TestContextBound(t *testing.T) {
	d := dynalite(t)
	watermarktest.ContextBound(t, newStore(t, Config{Table: d.NewTable(t)}, wm.Env{}))
}

// observer records watermark I/O events.
type observer struct {
	mu     sync.Mutex
	events []ports.WatermarkIOEvent
}

func (o *observer) ObserveWatermarkIO(e ports.WatermarkIOEvent) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *observer) take() []ports.WatermarkIOEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.events
	o.events = nil
	return e
}

func ops(events []ports.WatermarkIOEvent) []string {
	var out []string
	for _, e := range events {
		s := e.Operation
		if e.ErrorType != "" {
			s += ":" + e.ErrorType
		}
		out = append(out, s)
	}
	return out
}

// TestIOObserved: every DynamoDB call is reported with backend "aws", the
// table, the operation and, on failure, its class; the steady state is one
// write per commit.
func TestIOObserved(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	obs := &observer{}
	s := newStore(t, Config{Table: table}, wm.Env{IO: obs})
	opened := obs.take()
	require.GreaterOrEqual(t, len(opened), 3, "%v", ops(opened))
	assert.Equal(t, []string{"read:not_found", "create", "read"}, ops(opened)[:3], "describe, create, describe until active")
	for _, e := range opened {
		assert.Equal(t, "aws", e.Backend)
		assert.Equal(t, table, e.Table)
	}

	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	_, err := s.Commit(ctx, k, watermarktest.M(1, 0, 1, "s1"))
	require.NoError(t, err)
	assert.Equal(t, []string{"read", "write"}, ops(obs.take()), "first commit: read the item, then write")
	_, err = s.Commit(ctx, k, watermarktest.M(2, 0, 2, "s2"))
	require.NoError(t, err)
	assert.Equal(t, []string{"write"}, ops(obs.take()), "steady state: one write per commit")

	// Another daemon raises the mark: the next write fails its condition.
	other := newStore(t, Config{Table: table}, wm.Env{})
	_, err = other.Commit(ctx, k, watermarktest.M(3, 0, 3, "o3"))
	require.NoError(t, err)
	_, err = s.Commit(ctx, k, watermarktest.M(4, 0, 4, "s4"))
	require.NoError(t, err)
	events := obs.take()
	assert.Equal(t, []string{"write:conflict", "read", "write"}, ops(events))
	assert.Error(t, events[0].Err)
	_, err = s.Export(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"read"}, ops(obs.take()), "export: one scan page")
}

// conflictItemAPI makes the failures of conditional writes carry the item
// (as DynamoDB does with ReturnValuesOnConditionCheckFailure, which
// dynalite ignores) and counts reads.
type conflictItemAPI struct {
	API
	mu    sync.Mutex
	reads int
}

func (c *conflictItemAPI) GetItem(ctx context.Context, in *ddb.GetItemInput, opts ...func(*ddb.Options)) (*ddb.GetItemOutput, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.API.GetItem(ctx, in, opts...)
}

func (c *conflictItemAPI) PutItem(ctx context.Context, in *ddb.PutItemInput, opts ...func(*ddb.Options)) (*ddb.PutItemOutput, error) {
	out, err := c.API.PutItem(ctx, in, opts...)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		cur, gerr := c.API.GetItem(ctx, &ddb.GetItemInput{TableName: in.TableName, Key: map[string]types.AttributeValue{
			AttrIdx: in.Item[AttrIdx], AttrRequest: in.Item[AttrRequest],
		}, ConsistentRead: aws.Bool(true)})
		if gerr != nil {
			return nil, gerr
		}
		return nil, &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed"), Item: cur.Item}
	}
	return out, err
}

// TestConflictCarriesItem: when the failed condition comes back with the
// current item, Commit decides on it without reading again.
func TestConflictCarriesItem(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	plain := newStore(t, Config{Table: table}, wm.Env{})
	api := &conflictItemAPI{API: plain.api}
	s, err := open(ctx, api, table, harness.DynaliteRegion, wm.Env{})
	require.NoError(t, err)
	other := newStore(t, Config{Table: table}, wm.Env{})

	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	_, err = s.Commit(ctx, k, watermarktest.M(1, 0, 1, "s1"))
	require.NoError(t, err)
	require.Equal(t, 1, api.reads)
	_, err = other.Commit(ctx, k, watermarktest.M(2, 0, 2, "o2"))
	require.NoError(t, err)

	_, err = s.Commit(ctx, k, watermarktest.M(2, 0, 3, "s2"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "%v", err)
	got, err := s.Commit(ctx, k, watermarktest.M(2, 0, 2, "again"))
	require.NoError(t, err)
	assert.Equal(t, watermarktest.Sig("o2"), got.Signature)
	_, err = s.Commit(ctx, k, watermarktest.M(3, 0, 4, "s3"))
	require.NoError(t, err)
	assert.Equal(t, 1, api.reads, "the store learned the item from the failed condition, never reading it again")
}

// TestOutage stops a private dynalite under a live store: Commit fails as
// unavailable, naming DynamoDB, within the caller's deadline, records
// nothing, and works again once DynamoDB is back (with its data).
func TestOutage(t *testing.T) {
	d := harness.StartPrivateDynalite(t)
	d.SetEnv(t)
	ctx := context.Background()
	table := d.NewTable(t)
	s := newStore(t, Config{Table: table}, wm.Env{})
	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindBlock)
	_, err := s.Commit(ctx, k, watermarktest.M(1, 0, 1, "s1"))
	require.NoError(t, err)

	d.Stop()
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = s.Commit(dctx, k, watermarktest.M(2, 0, 2, "s2"))
	cancel()
	require.Error(t, err)
	t.Logf("commit with DynamoDB down: %v", err)
	assert.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	assert.Contains(t, err.Error(), "DynamoDB")
	assert.Contains(t, err.Error(), "table "+table)
	m, _, _ := s.Check(ctx, k)
	assert.Equal(t, int32(1), m.Level, "the failed commit is not remembered")

	require.NoError(t, d.Restart())
	// DynamoDB is back with its data: the mark from before the outage
	// holds, and the commit that failed had recorded nothing.
	_, err = s.Commit(ctx, k, watermarktest.M(1, 0, 9, "x"))
	assert.Equal(t, domain.KindConflict, domain.KindOf(err), "%v", err)
	_, err = s.Commit(ctx, k, watermarktest.M(2, 0, 2, "s2"))
	require.NoError(t, err)
	recs, err := s.Export(ctx)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, watermarktest.M(2, 0, 2, "s2"), recs[0].Mark)
}

func BenchmarkCommit(b *testing.B) {
	d := dynalite(b)
	watermarktest.BenchmarkCommit(b, newStore(b, Config{Table: d.NewTable(b)}, wm.Env{}))
}

func BenchmarkCommitParallel(b *testing.B) {
	d := dynalite(b)
	watermarktest.BenchmarkCommitParallel(b, newStore(b, Config{Table: d.NewTable(b)}, wm.Env{}))
}

// Healthy answers for a reachable table and fails, naming DynamoDB, when
// the server is gone.
func TestHealthy(t *testing.T) {
	d := harness.StartPrivateDynalite(t)
	d.SetEnv(t)
	s := newStore(t, Config{Table: d.NewTable(t)}, wm.Env{})
	require.NoError(t, s.Healthy(context.Background()))
	d.Stop()
	err := s.Healthy(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DynamoDB")
}
