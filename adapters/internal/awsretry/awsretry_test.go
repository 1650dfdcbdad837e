package awsretry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"

	"github.com/sigil-signer/sigil/adapters/internal/awsretry"
)

func httpErr(status int, err error) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		transient bool
		throttled bool
	}{
		{"throughput exceeded", &types.ProvisionedThroughputExceededException{}, true, true},
		{"throttling", &smithy.GenericAPIError{Code: "ThrottlingException"}, true, true},
		{"request limit", &types.RequestLimitExceeded{}, true, true},
		{"HTTP 503", httpErr(503, errors.New("unavailable")), true, false},
		{"HTTP 500", httpErr(500, &types.InternalServerError{}), true, false},
		{"unmodeled HTTP 429", httpErr(429, errors.New("slow down")), true, true},
		{"connection refused", &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, true, false},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true, false},
		{"condition failed", &types.ConditionalCheckFailedException{}, false, false},
		{"table missing", &types.ResourceNotFoundException{}, false, false},
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException"}, false, false},
		{"HTTP 400", httpErr(400, &smithy.GenericAPIError{Code: "ValidationException"}), false, false},
		{"caller canceled", &aws.RequestCanceledError{Err: context.Canceled}, false, false},
		{"caller deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), false, false},
		{"plain", errors.New("plain"), false, false},
		{"nil", nil, false, false},
	} {
		assert.Equal(t, c.transient, awsretry.Transient(c.err), "%s: transient", c.name)
		assert.Equal(t, c.throttled, awsretry.Throttled(c.err), "%s: throttled", c.name)
	}
}

func TestCode(t *testing.T) {
	assert.Equal(t, "ConditionalCheckFailedException", awsretry.Code(fmt.Errorf("put: %w", &types.ConditionalCheckFailedException{})))
	assert.Equal(t, "", awsretry.Code(errors.New("plain")))
}

func TestDo(t *testing.T) {
	p := awsretry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Attempts: 5}
	calls := 0
	err := awsretry.Do(context.Background(), p, nil, func(context.Context) error {
		calls++
		if calls < 3 {
			return &types.ProvisionedThroughputExceededException{}
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 3, calls, "throttling is retried")

	calls = 0
	err = awsretry.Do(context.Background(), p, nil, func(context.Context) error {
		calls++
		return &types.ConditionalCheckFailedException{}
	})
	assert.Error(t, err)
	assert.Equal(t, 1, calls, "a failed condition is an answer, not retried")

	calls = 0
	err = awsretry.Do(context.Background(), p, nil, func(context.Context) error {
		calls++
		return httpErr(503, errors.New("down"))
	})
	assert.Error(t, err)
	assert.Equal(t, 5, calls, "attempts are bounded")
}
