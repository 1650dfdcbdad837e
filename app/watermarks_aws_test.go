package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/ports"
)

// TestMain stops the dynalite started by the tests.
func TestMain(m *testing.M) { harness.Main(m) }

// signatoryAWSWatermark is a Signatory configuration's watermark section
// for DynamoDB, as its documentation writes it, with static credentials.
const signatoryAWSWatermark = `
server:
  address: :6732
  utility_address: :9583
watermark:
  driver: aws
  config:
    region: us-east-1
    # Optional: override default table name
    table: my_custom_watermark_table
    access_key_id: AKIAIOSFODNN7EXAMPLE
    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
    session_token: ""
`

// TestSignatoryAWSWatermarkSection loads a Signatory `watermark: {driver:
// aws, …}` section verbatim through the application's wiring (the endpoint
// alone comes from AWS_ENDPOINT_URL_DYNAMODB; credentials and region only
// from the section), then commits and replays a mark through the store it
// opened, in the table it names.
func TestSignatoryAWSWatermarkSection(t *testing.T) {
	d := harness.StartDynalite(t)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", d.Endpoint())
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	dir := t.TempDir()
	path := filepath.Join(dir, "signatory.yaml")
	if err := os.WriteFile(path, []byte(signatoryAWSWatermark), 0o600); err != nil {
		t.Fatal(err)
	}
	var store ports.WatermarkStore
	fxApp := fx.New(
		app.Core(app.Options{ConfigPath: path, BaseDir: dir, LogLevel: "error"}),
		app.Watermarks(),
		app.Witnessed(), // as the daemon: a first start (empty witness) creates the table
		fx.Populate(&store),
		fx.NopLogger,
	)
	if err := fxApp.Err(); err != nil {
		t.Fatalf("the section does not load: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := fxApp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer fxApp.Stop(ctx)

	k := watermarktest.Key(watermarktest.Mainnet, watermark.KindAttestation)
	m := watermarktest.M(500, 1, 7, "sig500")
	if got, err := store.Commit(ctx, k, m); err != nil || got != m {
		t.Fatalf("Commit: %+v, %v", got, err)
	}
	if got, err := store.Commit(ctx, k, watermarktest.M(500, 1, 7, "retry")); err != nil || got.Signature != watermarktest.Sig("sig500") {
		t.Fatalf("identical retry: %+v, %v; want the recorded signature", got, err)
	}
	item, err := d.Client().GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String("my_custom_watermark_table"),
		Key: map[string]types.AttributeValue{
			"idx":     &types.AttributeValueMemberS{Value: k.ChainID + "/" + k.PKH},
			"request": &types.AttributeValueMemberS{Value: "attestation"},
		},
	})
	if err != nil {
		t.Fatalf("reading the table named by the section: %v", err)
	}
	if lvl, ok := item.Item["lvl"].(*types.AttributeValueMemberN); !ok || lvl.Value != "500" {
		t.Fatalf("item in my_custom_watermark_table: %#v, want the mark at level 500", item.Item)
	}
}
