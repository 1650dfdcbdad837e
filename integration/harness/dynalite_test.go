package harness

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// tablesOf lists dynalite's tables (a real API call), or returns the error.
func tablesOf(d *Dynalite) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := d.Client().ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		return nil, err
	}
	return out.TableNames, nil
}

func TestSharedDynalite(t *testing.T) {
	d := StartDynalite(t)
	if d2 := StartDynalite(t); d2 != d {
		t.Fatal("StartDynalite started a second shared dynalite")
	}
	a, b := d.NewTable(t), d.NewTable(t)
	if a == b || len(a) < 3 {
		t.Fatalf("NewTable returned %q and %q", a, b)
	}
	ctx := context.Background()
	_, err := d.Client().CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(a),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	names, err := tablesOf(d)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == a
	}
	if !found {
		t.Fatalf("table %s not listed: %v", a, names)
	}
	env := strings.Join(d.Env(), " ")
	for _, want := range []string{"AWS_ENDPOINT_URL_DYNAMODB=" + d.Endpoint(), "AWS_REGION=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="} {
		if !strings.Contains(env, want) {
			t.Fatalf("Env() = %v lacks %s", d.Env(), want)
		}
	}
	t.Logf("dynalite start-up %v", d.StartupTime())
}

func TestPrivateDynaliteStopRestart(t *testing.T) {
	d := StartPrivateDynalite(t)
	table := d.NewTable(t)
	_, err := d.Client().CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	pid := d.proc.Pid()
	d.Stop()
	if _, err := tablesOf(d); err == nil {
		t.Fatal("dynalite still answers after Stop")
	}
	if err := syscall.Kill(-pid, 0); err == nil {
		t.Fatal("dynalite's process group still exists after Stop")
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if names, err := tablesOf(d); err != nil || len(names) != 1 || names[0] != table {
		t.Fatalf("after Restart: tables %v, %v; want the table created before (data kept on disk)", names, err)
	}
	if !strings.Contains(d.Log(), "----- restart -----") || !strings.Contains(d.Log(), "Dynalite listening") {
		t.Fatalf("log does not span the restart:\n%s", d.Log())
	}
}
