package dynamo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sigil-signer/sigil/adapters/internal/awsretry"
	"github.com/sigil-signer/sigil/domain"
)

// TableAPI is the part of the DynamoDB client EnsureTable uses.
type TableAPI interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}

// Table describes a table's key schema: a string hash key and an optional
// string range key.
type Table struct {
	Name         string
	Hash, Range  string // attribute names; Range "" for none
	What, Where  string // for errors: the adapter, and "table T, region R"
	PollInterval time.Duration
	// NoCreate, when set, is why a missing table must not be created: it
	// is then an error saying so (a watermark table re-created empty would
	// let a lower level sign).
	NoCreate string
}

func (t Table) schema() string {
	s := fmt.Sprintf("hash key %s (S)", t.Hash)
	if t.Range != "" {
		s += fmt.Sprintf(", range key %s (S)", t.Range)
	}
	return s
}

// EnsureTable makes sure t exists with its key schema and is ACTIVE,
// creating it (on-demand billing) when it does not exist, as Signatory
// does. A table that exists with another key schema is an error. Without
// the dynamodb:DescribeTable permission it assumes the table exists and
// leaves the first real call to tell. Calls go through call, so they are
// retried and observed ("read" for DescribeTable, "create" for
// CreateTable); ctx bounds the whole.
func EnsureTable(ctx context.Context, api TableAPI, call Caller, t Table, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poll := t.PollInterval
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	created := false
	for {
		var out *dynamodb.DescribeTableOutput
		err := call.Do(ctx, "read", func(ctx context.Context) error {
			var err error
			out, err = api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.Name)})
			return err
		})
		code := awsretry.Code(err)
		switch {
		case err == nil:
		case code == "ResourceNotFoundException" && created:
			// Just created; not yet visible to DescribeTable.
			out = &dynamodb.DescribeTableOutput{Table: &types.TableDescription{TableStatus: types.TableStatusCreating}}
		case code == "ResourceNotFoundException" && t.NoCreate != "":
			return domain.Errorf(domain.KindUnavailable, "%s: %s: the table does not exist, and is not created: %s", t.What, t.Where, t.NoCreate)
		case code == "ResourceNotFoundException":
			ours, err := create(ctx, api, call, t)
			if err != nil {
				return err
			}
			created = true
			if ours {
				log.Info("DynamoDB table created", "table", t.Name, "schema", t.schema())
			} else {
				log.Info("DynamoDB table being created by another process: waiting for it", "table", t.Name)
			}
			continue
		case ErrorType(err) == "denied" && !created:
			log.Warn("cannot describe the DynamoDB table (no dynamodb:DescribeTable permission?): assuming it exists with the expected key schema",
				"table", t.Name, "schema", t.schema(), "error", err)
			return nil
		default:
			return Fail(ctx, t.What, t.Where, "describe table", err)
		}
		if err == nil {
			if err := checkSchema(out.Table, t); err != nil {
				return err
			}
		}
		if out.Table.TableStatus == types.TableStatusActive || out.Table.TableStatus == types.TableStatusUpdating {
			return nil
		}
		select {
		case <-ctx.Done():
			return domain.Errorf(domain.KindUnavailable, "%s: %s: table is %s, not ACTIVE, at the deadline: %v", t.What, t.Where, out.Table.TableStatus, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// create creates t; ours is false when another process was creating it.
func create(ctx context.Context, api TableAPI, call Caller, t Table) (ours bool, err error) {
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(t.Name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(t.Hash), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(t.Hash), KeyType: types.KeyTypeHash}},
	}
	if t.Range != "" {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(t.Range), AttributeType: types.ScalarAttributeTypeS})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String(t.Range), KeyType: types.KeyTypeRange})
	}
	err = call.Do(ctx, "create", func(ctx context.Context) error {
		_, err := api.CreateTable(ctx, in)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case awsretry.Code(err) == "ResourceInUseException":
		return false, nil
	}
	return false, Fail(ctx, t.What, t.Where, "create table", err)
}

// checkSchema refuses a table whose key schema is not t's.
func checkSchema(d *types.TableDescription, t Table) error {
	if d == nil {
		return fmt.Errorf("%s: %s: DescribeTable returned no table description", t.What, t.Where)
	}
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, a := range d.AttributeDefinitions {
		attrTypes[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	var hash, rng []string
	for _, k := range d.KeySchema {
		name := aws.ToString(k.AttributeName)
		desc := fmt.Sprintf("%s (%s)", name, attrTypes[name])
		if k.KeyType == types.KeyTypeHash {
			hash = append(hash, desc)
		} else {
			rng = append(rng, desc)
		}
	}
	got := "hash key " + strings.Join(hash, ",")
	if len(rng) > 0 {
		got += ", range key " + strings.Join(rng, ",")
	}
	if got != t.schema() {
		return domain.Errorf(domain.KindInvalid, "%s: %s: the table's key schema is %s, want %s (Signatory's layout): use another table", t.What, t.Where, got, t.schema())
	}
	return nil
}
