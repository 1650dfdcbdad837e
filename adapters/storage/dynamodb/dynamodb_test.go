package dynamodb

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/storage/storagetest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/ports"
)

// TestMain stops the shared dynalite when the tests end.
func TestMain(m *testing.M) { harness.Main(m) }

func dynalite(t testing.TB) *harness.Dynalite {
	d := harness.StartDynalite(t)
	d.SetEnv(t)
	return d
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// TestContract runs the shared suite, one table per case, with pages of
// 128 items so that the 700-key case crosses page boundaries.
func TestContract(t *testing.T) {
	d := dynalite(t)
	storagetest.Run(t, func(t *testing.T) storagetest.Factory {
		table := d.NewTable(t)
		return func(t *testing.T) ports.KeyStore {
			s := openStore(t, Config{Table: table})
			s.pageSize = 128
			return s
		}
	})
}

// TestItemShape checks Signatory's layout: hash key pkh (S), attribute
// value (B), nothing else.
func TestItemShape(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	s := openStore(t, Config{Table: table})
	desc, err := d.Client().DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	if ks := desc.Table.KeySchema; len(ks) != 1 || aws.ToString(ks[0].AttributeName) != "pkh" || ks[0].KeyType != types.KeyTypeHash {
		t.Fatalf("key schema %+v, want hash key pkh", ks)
	}
	pkh := storagetest.PKH(tezos.P256, 5)
	if err := s.Put(ctx, ports.StoredKey{PKH: pkh, Blob: []byte{0, 1, 255}}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Client().GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pkh": &types.AttributeValueMemberS{Value: pkh}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := out.Item["pkh"].(*types.AttributeValueMemberS)
	v, _ := out.Item["value"].(*types.AttributeValueMemberB)
	if len(out.Item) != 2 || p == nil || p.Value != pkh || v == nil || !bytes.Equal(v.Value, []byte{0, 1, 255}) {
		t.Fatalf("item = %#v", out.Item)
	}
}

// TestSignatoryTable opens a table created and filled as Signatory's Nitro
// vault does (provisioned 5/5, items {pkh, value}).
func TestSignatoryTable(t *testing.T) {
	ctx := context.Background()
	d := dynalite(t)
	table := d.NewTable(t)
	c := d.Client()
	_, err := c.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:             aws.String(table),
		AttributeDefinitions:  []types.AttributeDefinition{{AttributeName: aws.String("pkh"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String("pkh"), KeyType: types.KeyTypeHash}},
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(5)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Opening waits until the table is ACTIVE; then Signatory's items load.
	s := openStore(t, Config{Table: table})
	want := map[string][]byte{}
	for i, kt := range tezos.KeyTypes {
		pkh, blob := storagetest.PKH(kt, i), storagetest.Blob(i, 0)
		want[pkh] = blob
		if _, err := c.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
			"pkh": &types.AttributeValueMemberS{Value: pkh}, "value": &types.AttributeValueMemberB{Value: blob},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := s.List(ctx)
	if err != nil || len(keys) != len(want) {
		t.Fatalf("List: %d keys, %v; want %d", len(keys), err, len(want))
	}
	for _, k := range keys {
		if !bytes.Equal(want[k.PKH], k.Blob) {
			t.Fatalf("key %s: wrong blob", k.PKH)
		}
	}
}

func TestMalformedItems(t *testing.T) {
	d := dynalite(t)
	ctx := context.Background()
	good := storagetest.PKH(tezos.Ed25519, 1)
	cases := []struct {
		name string
		item map[string]types.AttributeValue
		want string
	}{
		{"invalid address", map[string]types.AttributeValue{"pkh": &types.AttributeValueMemberS{Value: "tz1nope"}, "value": &types.AttributeValueMemberB{Value: []byte("x")}}, `item "tz1nope": attribute pkh: invalid key hash`},
		{"missing value", map[string]types.AttributeValue{"pkh": &types.AttributeValueMemberS{Value: good}}, "item " + good + ": missing attribute value"},
		{"value not binary", map[string]types.AttributeValue{"pkh": &types.AttributeValueMemberS{Value: good}, "value": &types.AttributeValueMemberS{Value: "eA=="}}, "attribute value is a *types.AttributeValueMemberS, want binary"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			table := d.NewTable(t)
			s := openStore(t, Config{Table: table})
			if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.P256, 3), Blob: []byte("fine")}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Client().PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(table), Item: c.item}); err != nil {
				t.Fatal(err)
			}
			_, err := s.List(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "table "+table) {
				t.Fatalf("List: %v; want an error naming the table and containing %q", err, c.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	bad := func(any) error { return errors.New("yaml: field bogus not found in type dynamo.Config") }
	if _, err := Open(ctx, bad, storage.Env{}); err == nil || domain.KindOf(err) != domain.KindInvalid || !strings.Contains(err.Error(), "invalid config") {
		t.Fatalf("Open with an undecodable config: %v", err)
	}
	half := func(v any) error { v.(*Config).AccessKeyID = "AKID"; return nil }
	if _, err := Open(ctx, half, storage.Env{}); err == nil || domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("Open with half the credentials: %v", err)
	}

	d := dynalite(t)
	// No section: the default table, credentials and region from the
	// environment.
	ks, err := Open(ctx, nil, storage.Env{})
	if err != nil {
		t.Fatalf("Open without a section: %v", err)
	}
	if s := ks.(*Store); s.table != DefaultTable {
		t.Fatalf("table %q, want %q", s.table, DefaultTable)
	}
	// Signatory's section: static credentials and region from the config,
	// none in the environment.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_REGION", "")
	table := d.NewTable(t)
	section := func(v any) error {
		*v.(*Config) = Config{Table: table, Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
		return nil
	}
	ks, err = Open(ctx, section, storage.Env{})
	if err != nil {
		t.Fatalf("Open with Signatory's section: %v", err)
	}
	s := ks.(*Store)
	if !strings.Contains(s.where, "region eu-west-1") {
		t.Fatalf("store at %s, want region eu-west-1", s.where)
	}
	if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("x")}); err != nil {
		t.Fatalf("Put through an opened store: %v", err)
	}
}

// TestOutage stops dynalite under a live store: Put and List fail with a
// clear "unavailable" error within the caller's deadline and never report
// success; once it is back the store works again.
func TestOutage(t *testing.T) {
	d := harness.StartPrivateDynalite(t)
	d.SetEnv(t)
	ctx := context.Background()
	table := d.NewTable(t)
	s := openStore(t, Config{Table: table})
	if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	storagetest.FailsDuringOutage(t, s, 3*time.Second, "DynamoDB", "table "+table)

	// DynamoDB comes back with its data: the store works again, and the
	// Put that failed stored nothing.
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	k3 := ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 3), Blob: []byte("three")}
	if err := s.Put(ctx, k3); err != nil {
		t.Fatalf("Put after DynamoDB came back: %v", err)
	}
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List after DynamoDB came back: %v", err)
	}
	got := map[string]string{}
	for _, k := range keys {
		got[k.PKH] = string(k.Blob)
	}
	if len(got) != 2 || got[storagetest.PKH(tezos.BLS, 1)] != "one" || got[k3.PKH] != "three" {
		t.Fatalf("after the outage List = %v, want keys 1 and 3 only", got)
	}
}

// TestUnreachableAtStart: with nothing listening, New fails as unavailable
// within its context instead of hanging.
func TestUnreachableAtStart(t *testing.T) {
	harness.SkipIfShort(t)
	port := harness.FreePort(t) // nothing listens there
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:"+strconv.Itoa(port))
	t.Setenv("AWS_REGION", "us-east-1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := New(ctx, Config{AccessKeyID: "a", SecretAccessKey: "b"}, nil)
	if err == nil || domain.KindOf(err) != domain.KindUnavailable || !strings.Contains(err.Error(), "describe table") {
		t.Fatalf("New against nothing: %v, want an unavailable error", err)
	}
}
