// Package dynamo is what Sigil's DynamoDB adapters (the "aws" watermark
// store and the "aws"/"dynamodb" key storage) share: the configuration fields
// Signatory uses for them (table, region, access_key_id, secret_access_key,
// session_token), the AWS SDK for Go v2 client built from those fields (static
// keys when given, else the SDK's default credential chain; the standard
// AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL variables point it at another
// endpoint), creation of a missing table at start, Caller, which runs
// each DynamoDB call under the awsretry discipline with a bound per attempt
// and reports every attempt to an observer, and ScanAll, a whole table read
// page by page through a Caller.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/logging"

	"github.com/sigil-signer/sigil/adapters/internal/awsretry"
	"github.com/sigil-signer/sigil/adapters/internal/retry"
	"github.com/sigil-signer/sigil/domain"
)

// Config is the config section of a DynamoDB-backed driver, field for field
// as Signatory reads it.
type Config struct {
	// Table is the table name; each driver has its own default.
	Table string `yaml:"table"`
	// Region is the AWS region; empty means the SDK's default (AWS_REGION,
	// the shared config file…).
	Region string `yaml:"region"`
	// AccessKeyID and SecretAccessKey are static credentials; when empty
	// the SDK's default credential chain applies (environment, shared
	// files, web identity, ECS/EC2 roles).
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// SessionToken goes with temporary static credentials.
	SessionToken string `yaml:"session_token"`
}

// TableName returns c.Table, or def when it is empty, after checking that
// it is a valid DynamoDB table name.
func (c Config) TableName(what, def string) (string, error) {
	name := c.Table
	if name == "" {
		name = def
	}
	if len(name) < 3 || len(name) > 255 || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
	}) >= 0 {
		return "", domain.Errorf(domain.KindInvalid, "%s: table %q is not a valid DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ - .)", what, name)
	}
	return name, nil
}

// DecodeConfig decodes a driver's config section with decode (nil: the
// section is absent, and the zero Config applies); what names the driver in
// the error.
func DecodeConfig(decode func(any) error, what string) (Config, error) {
	var cfg Config
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return Config{}, domain.Errorf(domain.KindInvalid, "%s: invalid config: %v", what, err)
		}
	}
	return cfg, nil
}

// CheckSection is a driver's configuration check: its section decoded as
// DecodeConfig does and validated as Check does, without creating a client
// or contacting AWS.
func CheckSection(decode func(any) error, what, defTable string) error {
	cfg, err := DecodeConfig(decode, what)
	if err != nil {
		return err
	}
	return cfg.Check(context.Background(), what, defTable)
}

// Connect is what a driver does before it opens its table: the table name
// (see TableName), and a client with its region (see NewClient).
func Connect(ctx context.Context, c Config, what, defTable string, log *slog.Logger) (client *dynamodb.Client, table, region string, err error) {
	if table, err = c.TableName(what, defTable); err != nil {
		return nil, "", "", err
	}
	if client, region, err = NewClient(ctx, c, what, log); err != nil {
		return nil, "", "", err
	}
	return client, table, region, nil
}

// NewClient builds a DynamoDB client for c and returns it with the region
// it uses. The SDK's own retries are off: callers retry through Caller; its
// own log lines go to log (nil discards them). It does not contact the
// service. Errors never quote the credentials.
func NewClient(ctx context.Context, c Config, what string, log *slog.Logger) (*dynamodb.Client, string, error) {
	cfg, err := c.awsConfig(ctx, what, log)
	if err != nil {
		return nil, "", err
	}
	return dynamodb.NewFromConfig(cfg), cfg.Region, nil
}

// Check validates c as a driver whose default table is defTable would use
// it (table name, credentials given in pairs, a region from the section or
// the SDK's environment and shared files), without creating a client or
// contacting AWS.
func (c Config) Check(ctx context.Context, what, defTable string) error {
	if _, err := c.TableName(what, defTable); err != nil {
		return err
	}
	_, err := c.awsConfig(ctx, what, nil)
	return err
}

// awsConfig resolves the SDK configuration for c (no network: the SDK
// resolves credentials lazily).
func (c Config) awsConfig(ctx context.Context, what string, log *slog.Logger) (aws.Config, error) {
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return aws.Config{}, domain.Errorf(domain.KindInvalid, "%s: access_key_id and secret_access_key go together: set both, or neither to use the default AWS credential chain", what)
	}
	if c.SessionToken != "" && c.AccessKeyID == "" {
		return aws.Config{}, domain.Errorf(domain.KindInvalid, "%s: session_token needs access_key_id and secret_access_key", what)
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		awsconfig.WithLogger(sdkLogger(log, what)),
	}
	if c.Region != "" {
		opts = append(opts, awsconfig.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, domain.Errorf(domain.KindInvalid, "%s: loading the AWS configuration: %v", what, err)
	}
	if cfg.Region == "" {
		return aws.Config{}, domain.Errorf(domain.KindInvalid, "%s: no AWS region: set region in the config section, or AWS_REGION", what)
	}
	return cfg, nil
}

// sdkLogger passes the SDK's log lines (warnings, and debug lines when
// enabled) to log.
func sdkLogger(log *slog.Logger, what string) logging.Logger {
	if log == nil {
		return logging.Nop{}
	}
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		lvl := slog.LevelDebug
		if c == logging.Warn {
			lvl = slog.LevelWarn
		}
		log.Log(context.Background(), lvl, "AWS SDK: "+fmt.Sprintf(format, v...), "adapter", what)
	})
}

// Caller runs DynamoDB calls: each attempt bounded by AttemptTimeout and
// reported to Observe, transient failures (awsretry.Transient, or an
// attempt that ran out of its own time while the caller's context is still
// live) retried under Policy.
type Caller struct {
	Policy         retry.Policy
	AttemptTimeout time.Duration // 0: no bound besides the caller's context
	// Observe, if non-nil, is told about every attempt: op is "read",
	// "write" or "create".
	Observe func(op string, start time.Time, err error)
	// Log, if non-nil, gets a debug line per retry.
	Log   *slog.Logger
	Where string // names the table in log lines
}

// attemptTimeout marks an attempt cut by Caller's own bound.
type attemptTimeout struct{ err error }

func (e *attemptTimeout) Error() string {
	return "no answer from DynamoDB within the attempt's time limit: " + e.err.Error()
}
func (e *attemptTimeout) Unwrap() error { return e.err }

func (c Caller) transient(err error) bool {
	var at *attemptTimeout
	return errors.As(err, &at) || awsretry.Transient(err)
}

// Do runs f (one DynamoDB call) as operation op, retrying it as Caller
// says. It returns nil, or f's last error wrapped in a *CallError that
// tells how many attempts were made.
func (c Caller) Do(ctx context.Context, op string, f func(context.Context) error) error {
	var onRetry func(int, time.Duration, error)
	if c.Log != nil {
		onRetry = func(attempt int, wait time.Duration, err error) {
			c.Log.Debug("transient DynamoDB error, retrying", "table", c.Where, "operation", op, "attempt", attempt, "wait", wait, "error", err)
		}
	}
	attempts := 0
	err := retry.Do(ctx, c.Policy, c.transient, onRetry, func(ctx context.Context) error {
		attempts++
		actx, cancel := ctx, context.CancelFunc(func() {})
		if c.AttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, c.AttemptTimeout)
		}
		start := time.Now()
		err := f(actx)
		timedOut := err != nil && actx.Err() != nil && ctx.Err() == nil
		cancel()
		if timedOut {
			err = &attemptTimeout{err}
		}
		if c.Observe != nil {
			c.Observe(op, start, err)
		}
		return err
	})
	if err == nil {
		return nil
	}
	return &CallError{Attempts: attempts, Err: err}
}

// CallError is the error of a call made through Caller.Do.
type CallError struct {
	Attempts int // attempts made; 0 if ctx had ended before the first
	Err      error
}

func (e *CallError) Error() string { return e.Err.Error() }
func (e *CallError) Unwrap() error { return e.Err }

// ConditionFailed reports whether err is DynamoDB refusing a write because
// its condition did not hold, and returns the item as it was then when the
// service sent it back (ReturnValuesOnConditionCheckFailure).
func ConditionFailed(err error) (item map[string]types.AttributeValue, ok bool) {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ccf.Item, true
	}
	return nil, false
}

// ErrorType classifies err for the watermark_io_errors_total metric:
// "conflict" (a failed condition), "throttled", "unavailable" (network,
// 5xx, timeouts), "denied" (credentials or permissions), "not_found" (no
// such table) or "other".
func ErrorType(err error) string {
	var at *attemptTimeout
	switch code := awsretry.Code(err); {
	case err == nil:
		return ""
	case code == "ConditionalCheckFailedException":
		return "conflict"
	case awsretry.Throttled(err):
		return "throttled"
	case awsretry.Transient(err), errors.As(err, &at), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "unavailable"
	case code == "AccessDeniedException", code == "UnrecognizedClientException", code == "InvalidSignatureException",
		code == "ExpiredTokenException", code == "MissingAuthenticationTokenException", code == "InvalidClientTokenId":
		return "denied"
	case code == "ResourceNotFoundException":
		return "not_found"
	}
	return "other"
}

// Fail turns a failed call's error into the error an adapter returns: a
// domain.KindUnavailable error naming DynamoDB when it could not be reached
// in time or kept failing transiently, a plain error otherwise. Domain
// errors pass through. what names the adapter, where the table, op the
// operation.
func Fail(ctx context.Context, what, where, op string, err error) error {
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	attempts := 1
	var ce *CallError
	if errors.As(err, &ce) {
		attempts = ce.Attempts
	}
	var at *attemptTimeout
	switch {
	case ctx.Err() != nil:
		return domain.Errorf(domain.KindUnavailable, "%s: %s: %s: no answer from DynamoDB before the deadline or cancellation (unreachable or overloaded?): %w", what, where, op, err)
	case awsretry.Throttled(err):
		return domain.Errorf(domain.KindUnavailable, "%s: %s: %s: DynamoDB throttled the request (%s; raise the table's capacity or use on-demand billing): %w", what, where, op, plural(attempts, "attempt"), err)
	case awsretry.Transient(err) || errors.As(err, &at):
		return domain.Errorf(domain.KindUnavailable, "%s: %s: %s: DynamoDB unavailable (%s): %w", what, where, op, plural(attempts, "attempt"), err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return domain.Errorf(domain.KindUnavailable, "%s: %s: %s: no answer from DynamoDB before the deadline or cancellation (unreachable or overloaded?): %w", what, where, op, err)
	case ErrorType(err) == "denied":
		return domain.Errorf(domain.KindUnavailable, "%s: %s: %s: DynamoDB refused the credentials or the permission (see the IAM policy in docs/storage-dynamodb.md): %w", what, where, op, err)
	}
	return fmt.Errorf("%s: %s: %s: DynamoDB error: %w", what, where, op, err)
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
