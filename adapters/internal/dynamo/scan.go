package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ScanAPI is the part of the DynamoDB client ScanAll uses.
type ScanAPI interface {
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// ScanAll reads the whole table in.TableName with strongly consistent Scans,
// page by page from the start (in's other fields, such as Limit, apply to
// every page; in itself is not changed), each page one "read" through call,
// and hands every item to each in order. A page that fails ends the scan
// with Fail(ctx, what, where, "<op> (page N)", err); an error of each ends
// it with that error as it is.
func ScanAll(ctx context.Context, api ScanAPI, call Caller, in *dynamodb.ScanInput, what, where, op string, each func(map[string]types.AttributeValue) error) error {
	page := *in
	page.ConsistentRead = aws.Bool(true)
	page.ExclusiveStartKey = nil
	for n := 1; ; n++ {
		var res *dynamodb.ScanOutput
		err := call.Do(ctx, "read", func(ctx context.Context) error {
			var err error
			res, err = api.Scan(ctx, &page)
			return err
		})
		if err != nil {
			return Fail(ctx, what, where, fmt.Sprintf("%s (page %d)", op, n), err)
		}
		for _, it := range res.Items {
			if err := each(it); err != nil {
				return err
			}
		}
		if len(res.LastEvaluatedKey) == 0 {
			return nil
		}
		page.ExclusiveStartKey = res.LastEvaluatedKey
	}
}
