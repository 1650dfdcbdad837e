package dynamo

import (
	"context"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/domain"
)

// fakeScan serves items in pages of size, and fails page failPage (1-based;
// 0: none) with failErr. It records every input it is given.
type fakeScan struct {
	items    []string
	size     int
	failPage int
	failErr  error
	inputs   []dynamodb.ScanInput
}

func (f *fakeScan) Scan(_ context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	f.inputs = append(f.inputs, *in)
	if len(f.inputs) == f.failPage {
		return nil, f.failErr
	}
	from := 0
	if k, ok := in.ExclusiveStartKey["k"].(*types.AttributeValueMemberN); ok {
		from, _ = strconv.Atoi(k.Value)
		from++
	}
	to := min(from+f.size, len(f.items))
	out := &dynamodb.ScanOutput{}
	for i := from; i < to; i++ {
		out.Items = append(out.Items, map[string]types.AttributeValue{"v": &types.AttributeValueMemberS{Value: f.items[i]}})
	}
	if to < len(f.items) {
		out.LastEvaluatedKey = map[string]types.AttributeValue{"k": &types.AttributeValueMemberN{Value: strconv.Itoa(to - 1)}}
	}
	return out, nil
}

func value(it map[string]types.AttributeValue) string {
	return it["v"].(*types.AttributeValueMemberS).Value
}

func TestScanAllPages(t *testing.T) {
	f := &fakeScan{items: []string{"a", "b", "c", "d", "e"}, size: 2}
	in := &dynamodb.ScanInput{TableName: aws.String("t"), Limit: aws.Int32(2)}
	var got []string
	err := ScanAll(context.Background(), f, Caller{Policy: testPolicy}, in, "w", "table t", "list", func(it map[string]types.AttributeValue) error {
		got = append(got, value(it))
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c", "d", "e"}, got)
	require.Len(t, f.inputs, 3)
	for i, in := range f.inputs {
		assert.Equal(t, "t", aws.ToString(in.TableName), "page %d", i+1)
		assert.True(t, aws.ToBool(in.ConsistentRead), "page %d is a consistent read", i+1)
		assert.Equal(t, int32(2), aws.ToInt32(in.Limit), "page %d keeps the limit", i+1)
	}
	assert.Nil(t, f.inputs[0].ExclusiveStartKey, "the first page starts at the beginning")
	assert.Equal(t, &types.AttributeValueMemberN{Value: "1"}, f.inputs[1].ExclusiveStartKey["k"])
	assert.Equal(t, &types.AttributeValueMemberN{Value: "3"}, f.inputs[2].ExclusiveStartKey["k"])
	assert.Nil(t, in.ConsistentRead, "the caller's input is left as it was")
	assert.Nil(t, in.ExclusiveStartKey)
}

func TestScanAllErrors(t *testing.T) {
	ctx := context.Background()
	// A page that fails for good names the operation and the page.
	f := &fakeScan{items: []string{"a", "b", "c"}, size: 1, failPage: 2, failErr: apiErr("ValidationException")}
	var got []string
	err := ScanAll(ctx, f, Caller{Policy: testPolicy}, &dynamodb.ScanInput{TableName: aws.String("t")}, "w", "table t", "export", func(it map[string]types.AttributeValue) error {
		got = append(got, value(it))
		return nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "w: table t: export (page 2): DynamoDB error")
	assert.Equal(t, []string{"a"}, got)

	// An error of each ends the scan and comes back as it is.
	f = &fakeScan{items: []string{"a", "b", "c"}, size: 3}
	bad := domain.Errorf(domain.KindInternal, "item b is malformed")
	got = nil
	err = ScanAll(ctx, f, Caller{Policy: testPolicy}, &dynamodb.ScanInput{TableName: aws.String("t")}, "w", "table t", "export", func(it map[string]types.AttributeValue) error {
		got = append(got, value(it))
		if value(it) == "b" {
			return bad
		}
		return nil
	})
	assert.Equal(t, bad, err)
	assert.Equal(t, []string{"a", "b"}, got)
}
