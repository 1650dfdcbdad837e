// Package awsretry is the retry discipline of Sigil's AWS adapters (the
// DynamoDB watermark store and key storage): which AWS SDK errors are
// transient (throttling, HTTP 5xx, connection failures, as the SDK's own
// standard retryer classifies them), retried with the loop of package retry
// (capped exponential backoff and jitter, bounded by attempts and by the
// caller's context), the same loop the Google Cloud adapters use through
// gcpretry. The clients these adapters build switch the SDK's own retryer
// off, so that this is the only retry layer.
package awsretry

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdkretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/sigil-signer/sigil/adapters/internal/retry"
)

// Policy bounds the retries.
type Policy = retry.Policy

var (
	retryables = sdkretry.IsErrorRetryables(sdkretry.DefaultRetryables)
	throttles  = sdkretry.IsErrorThrottles(sdkretry.DefaultThrottles)
)

// Transient reports whether err is worth retrying: a throttling error, an
// HTTP 500/502/503/504 answer, a request timeout or a connection failure
// (refused, reset, DNS, dial), and never the caller's own cancellation or
// deadline, nor an answer such as a failed condition or a denied access.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return retryables.IsErrorRetryable(err) == aws.TrueTernary
}

// Throttled reports whether err is the service refusing for load
// (ProvisionedThroughputExceededException, ThrottlingException, HTTP 429…).
func Throttled(err error) bool {
	return err != nil && throttles.IsErrorThrottle(err) == aws.TrueTernary
}

// Code returns the AWS error code of err ("ConditionalCheckFailedException",
// "ResourceNotFoundException", …), or "" if err is not an API error.
func Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Do is retry.Do with Transient as the classifier.
func Do(ctx context.Context, p Policy, onRetry func(attempt int, wait time.Duration, err error), f func(context.Context) error) error {
	return retry.Do(ctx, p, Transient, onRetry, f)
}
