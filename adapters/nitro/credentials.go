package nitro

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
)

// Credentials is the `credentials` section of Signatory's nitro vault.
// Absent, the AWS default credential chain applies (environment, shared
// files, web identity, container and instance roles).
type Credentials struct {
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	SessionToken    string `yaml:"session_token"`
	Region          string `yaml:"region"`
}

// CredentialSource yields the AWS credentials and region for an Initialize
// (EncryptionKeyID is filled in by the caller). It is called for every new
// connection; implementations cache and refresh as needed.
type CredentialSource interface {
	Retrieve(ctx context.Context) (enclavewire.AWSCredentials, error)
}

// awsSource wraps an AWS SDK credentials provider (cached and refreshed by
// the SDK) and a region.
type awsSource struct {
	provider aws.CredentialsProvider
	region   string
}

func (s awsSource) Retrieve(ctx context.Context) (enclavewire.AWSCredentials, error) {
	c, err := s.provider.Retrieve(ctx)
	if err != nil {
		return enclavewire.AWSCredentials{}, err
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return enclavewire.AWSCredentials{}, errors.New("the credential provider returned no access key")
	}
	out := enclavewire.AWSCredentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, Region: s.region}
	if c.SessionToken != "" {
		tok := c.SessionToken
		out.SessionToken = &tok
	}
	return out, nil
}

// NewCredentialSource resolves the `credentials` section as Signatory does:
// static keys when given, else the AWS default chain; the region from the
// section, else from the default configuration (AWS_REGION, shared config).
// Nothing is fetched over the network here; credentials are retrieved when
// a connection initializes.
func NewCredentialSource(ctx context.Context, c *Credentials) (CredentialSource, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if c != nil {
		ak, sk := strings.TrimSpace(c.AccessKeyID), strings.TrimSpace(c.SecretAccessKey)
		switch {
		case ak != "" && sk != "":
			opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, strings.TrimSpace(c.SessionToken))))
		case ak != "" || sk != "" || c.SessionToken != "":
			return nil, domain.Errorf(domain.KindInvalid, "nitro: credentials: give both access_key_id and secret_access_key, or neither (to use the AWS default credential chain)")
		}
		if r := strings.TrimSpace(c.Region); r != "" {
			opts = append(opts, awsconfig.WithRegion(r))
		}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, domain.Errorf(domain.KindInvalid, "nitro: AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		return nil, domain.Errorf(domain.KindInvalid, "nitro: no AWS region: set credentials.region (or AWS_REGION)")
	}
	return awsSource{provider: cfg.Credentials, region: cfg.Region}, nil
}
