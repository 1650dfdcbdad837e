// Package dynamodb is the DynamoDB watermark store (driver "aws"), for
// several daemons sharing one table on AWS. It keeps Signatory's table
// layout, so that a table written by Signatory is read by Sigil and the
// other way round: one item per mark, hash key idx ("<chain id>/<key hash>",
// a string), range key request (the request kind), with the attributes lvl
// and round (numbers) and digest (32 bytes), plus Sigil's own signature
// (a string), which Signatory ignores. Each Commit is one conditional
// PutItem: a create conditioned on the item being absent, or a replacement
// conditioned on the level, round and digest this process last saw, decided
// (domain/watermark.Decide) on the item as last read; so the steady state
// costs one write per signature, and two daemons can never both record the
// same level and round with different digests (the loser's condition fails,
// it learns the item from the failure or re-reads it, and decides again,
// which answers an identical retry with the recorded signature). Check
// answers from a per-process cache of marks seen recorded, which is never
// authoritative and safe because marks only rise. Every DynamoDB call is
// retried on transient errors under the awsretry discipline and reported
// to the watermark I/O observer. The table is created when absent, unless
// the application says it must not be (Env.NoCreate: marks existed, so a
// missing table is a deleted one or a typo in its name or region, and a
// table re-created empty would let a lower level sign).
package dynamodb

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sigil-signer/sigil/adapters/internal/dynamo"
	"github.com/sigil-signer/sigil/adapters/internal/retry"
	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultTable is the table used when none is configured (Signatory's
// default).
const DefaultTable = "watermark"

// Attribute names of a watermark item. Idx and Request form the key.
const (
	AttrIdx       = "idx"
	AttrRequest   = "request"
	AttrLevel     = "lvl"
	AttrRound     = "round"
	AttrDigest    = "digest"
	AttrSignature = "signature"
)

// Config is the driver's config section, as Signatory's: table, region,
// access_key_id, secret_access_key, session_token.
type Config = dynamo.Config

const what = "dynamodb watermark"

var (
	defaultRetry = retry.Policy{Initial: 50 * time.Millisecond, Max: time.Second, Attempts: 8}
	// attemptTimeout bounds one DynamoDB call; a call cut by it is retried.
	attemptTimeout = 5 * time.Second
	// setupTimeout bounds opening (describing or creating the table) when
	// the caller's context has no deadline.
	setupTimeout = 2 * time.Minute
)

// casAttempts bounds how often Commit re-decides after another writer
// changed the item between its read and its write.
const casAttempts = 8

// API is the part of the DynamoDB client the store uses.
type API interface {
	dynamo.TableAPI
	GetItem(ctx context.Context, in *ddb.GetItemInput, opts ...func(*ddb.Options)) (*ddb.GetItemOutput, error)
	PutItem(ctx context.Context, in *ddb.PutItemInput, opts ...func(*ddb.Options)) (*ddb.PutItemOutput, error)
	Scan(ctx context.Context, in *ddb.ScanInput, opts ...func(*ddb.Options)) (*ddb.ScanOutput, error)
}

// Store is a DynamoDB-backed ports.WatermarkStore. It is safe for
// concurrent use.
type Store struct {
	api   API
	table string
	where string // "table T, region R"
	call  dynamo.Caller
	rec   wm.IORecorder
	keys  *wm.Shared[itemState] // per-key lock, marks seen (Check), items as last read or written (Commit)
}

var _ ports.WatermarkStore = (*Store)(nil)

// Open connects to the table cfg names (creating it when absent) and
// returns the store. env.IO observes every DynamoDB call.
func Open(ctx context.Context, cfg Config, env wm.Env) (*Store, error) {
	client, table, region, err := dynamo.Connect(ctx, cfg, what, DefaultTable, env.Logger)
	if err != nil {
		return nil, err
	}
	return open(ctx, client, table, region, env)
}

// open builds the store over api and makes sure the table exists.
func open(ctx context.Context, api API, table, region string, env wm.Env) (*Store, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		api:   api,
		table: table,
		where: fmt.Sprintf("table %s, region %s", table, region),
		rec:   env.Recorder("aws", table),
		keys:  wm.NewShared[itemState](what),
	}
	s.call = dynamo.Caller{
		Policy:         defaultRetry,
		AttemptTimeout: attemptTimeout,
		Log:            log,
		Where:          s.where,
		Observe: func(op string, start time.Time, err error) {
			s.rec.Observe(op, start, err, dynamo.ErrorType(err))
		},
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, setupTimeout)
		defer cancel()
	}
	err := dynamo.EnsureTable(ctx, api, s.call, dynamo.Table{
		Name: table, Hash: AttrIdx, Range: AttrRequest, What: what, Where: s.where, NoCreate: env.NoCreate,
	}, log)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Driver is the `aws` backend's watermark.Opener.
func Driver(ctx context.Context, decode func(any) error, env wm.Env) (ports.WatermarkStore, error) {
	cfg, err := dynamo.DecodeConfig(decode, what)
	if err != nil {
		return nil, err
	}
	return Open(ctx, cfg, env)
}

// Check is the `aws` backend's watermark.Checker: the section is validated
// as Driver reads it, without creating a client or contacting AWS.
func Check(decode func(any) error, _ wm.Env) error {
	return dynamo.CheckSection(decode, what, DefaultTable)
}

var (
	_ wm.Opener  = Driver
	_ wm.Checker = Check
)

// itemKey is the primary key of k's item.
func itemKey(k watermark.Key) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrIdx:     &types.AttributeValueMemberS{Value: k.ChainID + "/" + k.PKH},
		AttrRequest: &types.AttributeValueMemberS{Value: k.Kind},
	}
}

// item is k's item holding m.
func item(k watermark.Key, m watermark.Mark) map[string]types.AttributeValue {
	it := itemKey(k)
	it[AttrLevel] = &types.AttributeValueMemberN{Value: strconv.FormatInt(int64(m.Level), 10)}
	it[AttrRound] = &types.AttributeValueMemberN{Value: strconv.FormatInt(int64(m.Round), 10)}
	it[AttrDigest] = &types.AttributeValueMemberB{Value: append([]byte(nil), m.Digest[:]...)}
	if m.Signature != "" {
		it[AttrSignature] = &types.AttributeValueMemberS{Value: m.Signature}
	}
	return it
}

// itemState is what this store last knew of an item: that it did not
// exist, or its mark and the raw attributes a conditional write compares.
type itemState struct {
	exists       bool
	mark         watermark.Mark
	level, round types.AttributeValue
	digest       *types.AttributeValueMemberB // nil when the item has no binary digest
}

func stateOf(raw map[string]types.AttributeValue, m watermark.Mark) itemState {
	st := itemState{exists: true, mark: m, level: raw[AttrLevel], round: raw[AttrRound]}
	if d, ok := raw[AttrDigest].(*types.AttributeValueMemberB); ok {
		st.digest = d
	}
	return st
}

// condition returns the condition under which a write replaces exactly
// the item st describes.
func (st itemState) condition() (string, map[string]string, map[string]types.AttributeValue) {
	if !st.exists {
		return "attribute_not_exists(#i)", map[string]string{"#i": AttrIdx}, nil
	}
	expr := "#l = :l AND #r = :r"
	names := map[string]string{"#l": AttrLevel, "#r": AttrRound}
	values := map[string]types.AttributeValue{":l": st.level, ":r": st.round}
	if st.digest != nil {
		expr += " AND #d = :d"
		names["#d"] = AttrDigest
		values[":d"] = st.digest
	}
	return expr, names, values
}

// decodeItem reads a mark. Signatory's items have no signature; a digest
// written as a list of numbers or missing is accepted.
func (s *Store) decodeItem(raw map[string]types.AttributeValue) (watermark.Mark, error) {
	bad := func(format string, args ...any) error {
		idx, _ := raw[AttrIdx].(*types.AttributeValueMemberS)
		req, _ := raw[AttrRequest].(*types.AttributeValueMemberS)
		name := "?"
		if idx != nil && req != nil {
			name = idx.Value + " " + req.Value
		}
		return domain.Errorf(domain.KindInternal, "%s: %s: item %s is malformed: %s", what, s.where, name, fmt.Sprintf(format, args...))
	}
	var m watermark.Mark
	for _, f := range []struct {
		name string
		dst  *int32
	}{{AttrLevel, &m.Level}, {AttrRound, &m.Round}} {
		n, ok := raw[f.name].(*types.AttributeValueMemberN)
		if !ok {
			return m, bad("attribute %s is %s, not a number", f.name, describe(raw[f.name]))
		}
		v, err := strconv.ParseInt(n.Value, 10, 32)
		if err != nil || v < 0 {
			return m, bad("attribute %s is %q, not a level or round", f.name, n.Value)
		}
		*f.dst = int32(v)
	}
	switch d := raw[AttrDigest].(type) {
	case nil, *types.AttributeValueMemberNULL:
	case *types.AttributeValueMemberB:
		if len(d.Value) != len(m.Digest) {
			return m, bad("digest has %d bytes, not 32", len(d.Value))
		}
		copy(m.Digest[:], d.Value)
	case *types.AttributeValueMemberL:
		if len(d.Value) != len(m.Digest) {
			return m, bad("digest has %d elements, not 32", len(d.Value))
		}
		for i, e := range d.Value {
			n, ok := e.(*types.AttributeValueMemberN)
			var b uint64
			var err error
			if ok {
				b, err = strconv.ParseUint(n.Value, 10, 8)
			}
			if !ok || err != nil {
				return m, bad("digest element %d is not a byte", i)
			}
			m.Digest[i] = byte(b)
		}
	default:
		return m, bad("digest is %s", describe(d))
	}
	switch sig := raw[AttrSignature].(type) {
	case nil, *types.AttributeValueMemberNULL:
	case *types.AttributeValueMemberS:
		if _, err := tezos.ParseSignature(sig.Value); err != nil {
			return m, bad("signature: %v", err)
		}
		m.Signature = sig.Value
	default:
		return m, bad("signature is %s, not a string", describe(sig))
	}
	return m, nil
}

func describe(v types.AttributeValue) string {
	if v == nil {
		return "missing"
	}
	return fmt.Sprintf("a %T", v)
}

// Check returns the highest mark this store has seen recorded for k. It is
// not authoritative: another daemon may have recorded a higher one.
func (s *Store) Check(_ context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	return s.keys.Check(k)
}

// Healthy implements ports.HealthChecker: one consistent read of an absent
// item, bounded to 2 s, so it fails when DynamoDB cannot be reached or
// refuses this daemon's credentials.
func (s *Store) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.api.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table),
		Key: map[string]types.AttributeValue{
			AttrIdx:     &types.AttributeValueMemberS{Value: "_health"},
			AttrRequest: &types.AttributeValueMemberS{Value: "_health"},
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return dynamo.Fail(ctx, what, s.where, "health check", err)
	}
	return nil
}

// read fetches k's item with a strongly consistent read.
func (s *Store) read(ctx context.Context, k watermark.Key) (itemState, error) {
	var out *ddb.GetItemOutput
	err := s.call.Do(ctx, "read", func(ctx context.Context) error {
		var err error
		out, err = s.api.GetItem(ctx, &ddb.GetItemInput{
			TableName:      aws.String(s.table),
			Key:            itemKey(k),
			ConsistentRead: aws.Bool(true),
		})
		return err
	})
	if err != nil {
		return itemState{}, dynamo.Fail(ctx, what, s.where, "read "+k.String(), err)
	}
	if len(out.Item) == 0 {
		return itemState{}, nil
	}
	m, err := s.decodeItem(out.Item)
	if err != nil {
		return itemState{}, err
	}
	return stateOf(out.Item, m), nil
}

// step is what a decide function of update wants: write next (nil: write
// nothing) and return result, or fail with err.
type step struct {
	next   *watermark.Mark
	result watermark.Mark
	err    error
}

// update runs the optimistic loop on k: decide on the item as last known,
// then write conditioned on the item still being that; on a failed
// condition learn the item (from the failure, or by reading it) and decide
// again. op names the operation in errors.
func (s *Store) update(ctx context.Context, k watermark.Key, op string, decide func(recorded *watermark.Mark) step) (watermark.Mark, error) {
	unlock, err := s.keys.Lock(ctx, k)
	if err != nil {
		return watermark.Mark{}, err
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		st, known := s.keys.State(k)
		if !known {
			if st, err = s.read(ctx, k); err != nil {
				return watermark.Mark{}, err
			}
			s.keys.SetState(k, st)
		}
		var recorded *watermark.Mark
		if st.exists {
			recorded = &st.mark
			s.keys.Remember(k, st.mark)
		}
		d := decide(recorded)
		if d.err != nil {
			return watermark.Mark{}, d.err
		}
		if d.next == nil {
			return d.result, nil
		}
		expr, names, values := st.condition()
		it := item(k, *d.next)
		err := s.call.Do(ctx, "write", func(ctx context.Context) error {
			_, err := s.api.PutItem(ctx, &ddb.PutItemInput{
				TableName:                           aws.String(s.table),
				Item:                                it,
				ConditionExpression:                 aws.String(expr),
				ExpressionAttributeNames:            names,
				ExpressionAttributeValues:           values,
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
			return err
		})
		if err == nil {
			s.keys.SetState(k, stateOf(it, *d.next))
			s.keys.Remember(k, *d.next)
			return d.result, nil
		}
		current, conflict := dynamo.ConditionFailed(err)
		if !conflict {
			s.keys.ForgetState(k)
			return watermark.Mark{}, dynamo.Fail(ctx, what, s.where, op+" "+k.String(), err)
		}
		// Written by someone else since we read it (or by our own write
		// whose answer was lost): learn the item and decide again.
		s.keys.ForgetState(k)
		if len(current) > 0 {
			if m, err := s.decodeItem(current); err == nil {
				s.keys.SetState(k, stateOf(current, m))
			}
		}
		if attempt >= casAttempts {
			return watermark.Mark{}, domain.Errorf(domain.KindUnavailable, "%s: %s: %s changed under %d attempts in a row", what, s.where, k, attempt)
		}
	}
}

// Commit records m for k as ports.WatermarkStore specifies, with one
// conditional write in the steady state (a read first when this process
// does not know the item yet, or after another writer changed it).
func (s *Store) Commit(ctx context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := watermark.ValidateCommit(k, m); err != nil {
		return watermark.Mark{}, err
	}
	return s.update(ctx, k, "commit", func(recorded *watermark.Mark) step {
		// A block mark Signatory recorded (no signature) covers its level.
		switch d, err := watermark.Decide(k, watermark.Enforced(k.Kind, recorded), m); d {
		case watermark.Replay:
			return step{result: *recorded}
		case watermark.Resign:
			// The very message of a mark recorded without its signature
			// (Signatory's): signed again, nothing to record.
			return step{result: m}
		case watermark.Accept:
			return step{next: &m, result: m}
		default:
			return step{err: err}
		}
	})
}

// Import raises marks to recs (see watermark.Raise), one conditional write
// per changed record. All records are validated before anything is
// written.
func (s *Store) Import(ctx context.Context, recs []watermark.Record) error {
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for _, r := range recs {
		_, err := s.update(ctx, r.Key, "import", func(recorded *watermark.Mark) step {
			m, changed := watermark.Raise(recorded, r.Mark)
			if !changed {
				return step{result: m}
			}
			return step{next: &m, result: m}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Export returns every mark in the table (a strongly consistent scan).
// Items of request kinds that carry no watermark in Sigil (Signatory's
// legacy "endorsement") are skipped.
func (s *Store) Export(ctx context.Context) ([]watermark.Record, error) {
	var out []watermark.Record
	in := &ddb.ScanInput{TableName: aws.String(s.table)}
	err := dynamo.ScanAll(ctx, s.api, s.call, in, what, s.where, "export", func(raw map[string]types.AttributeValue) error {
		idx, _ := raw[AttrIdx].(*types.AttributeValueMemberS)
		req, _ := raw[AttrRequest].(*types.AttributeValueMemberS)
		if idx == nil || req == nil {
			return domain.Errorf(domain.KindInternal, "%s: %s: an item lacks the string key attributes %s and %s", what, s.where, AttrIdx, AttrRequest)
		}
		if !watermark.ValidKind(req.Value) {
			return nil
		}
		chain, pkh, _ := strings.Cut(idx.Value, "/")
		k := watermark.Key{ChainID: chain, PKH: pkh, Kind: req.Value}
		if err := k.Validate(); err != nil {
			return domain.Errorf(domain.KindInternal, "%s: %s: item %s %s: %v", what, s.where, idx.Value, req.Value, err)
		}
		m, err := s.decodeItem(raw)
		if err != nil {
			return err
		}
		out = append(out, watermark.Record{Key: k, Mark: m})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Location names where the marks are (table and region).
func (s *Store) Location() string { return s.where }
