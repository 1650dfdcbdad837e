// Package gcpauth is a Confidential Space workload's Google credentials: the
// attestation token the launcher writes (and refreshes) is the subject token
// of Google external-account credentials for a Workload Identity Pool
// provider, exchanged at the Security Token Service for a federated access
// token of the pool's principal, which IAM grants what the attested workload
// may use (the Cloud KMS key that seals the keys, the guard's Firestore
// database). TokenSource returns an oauth2.TokenSource that caches the
// access token and exchanges the attestation token again when it expires,
// each exchange bounded by a timeout; Check gets the first token bounded by
// a context, with an error naming the provider, the token file and the
// service. Provider paths are checked before they reach a URL. The token
// file, the token service and the timeout are seams for tests and private
// endpoints; the zero Config is production. adapters/kms/gcpkms (Cloud KMS)
// and the guard's Firestore state both take their credentials here.
package gcpauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google/externalaccount"
)

// Production values, as enclave-signer uses them.
const (
	// DefaultTokenFile is where the Confidential Space launcher writes the
	// workload's attestation token (an OIDC JWT it refreshes).
	DefaultTokenFile = "/run/container_launcher/attestation_verifier_claims_token"
	// DefaultTokenURL is Google's Security Token Service.
	DefaultTokenURL = "https://sts.googleapis.com/v1/token"
	// SubjectTokenType is the type of the attestation token.
	SubjectTokenType = "urn:ietf:params:oauth:token-type:jwt"
	// Scope is the OAuth scope requested for the access token.
	Scope = "https://www.googleapis.com/auth/cloud-platform"
	// AudiencePrefix is prepended to the provider path to form the audience.
	AudiencePrefix = "//iam.googleapis.com/"
	// DefaultTimeout bounds one token exchange.
	DefaultTimeout = 10 * time.Second
)

// Config says where the attestation token is and where it is exchanged.
// The zero value is production.
type Config struct {
	// TokenFile holds the subject token; default DefaultTokenFile. It is
	// read again at every exchange (the launcher refreshes it).
	TokenFile string
	// TokenURL is the token exchange endpoint; default DefaultTokenURL.
	TokenURL string
	// Timeout bounds one exchange; default DefaultTimeout.
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.TokenFile == "" {
		c.TokenFile = DefaultTokenFile
	}
	if c.TokenURL == "" {
		c.TokenURL = DefaultTokenURL
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// ErrInvalidName is wrapped by the error of a malformed provider path.
var ErrInvalidName = errors.New("invalid resource name")

var (
	segment    = `[A-Za-z0-9._-]{1,128}`
	providerRE = regexp.MustCompile(`^projects/` + segment + `/locations/` + segment + `/workloadIdentityPools/` + segment + `/providers/` + segment + `$`)
)

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// CheckProviderPath checks the shape of a Workload Identity Pool provider
// path (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER).
func CheckProviderPath(path string) error {
	if !providerRE.MatchString(path) {
		return fmt.Errorf("%w: %s is not projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER", ErrInvalidName, quote(path))
	}
	return nil
}

// TokenSource returns the federated credentials of the provider at path:
// a token source that caches the access token and, when it expires, reads
// the attestation token again and exchanges it (bounded by cfg's timeout).
// It does not contact the service.
func TokenSource(cfg Config, path string) (oauth2.TokenSource, error) {
	if err := CheckProviderPath(path); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// The exchange runs with this context for the source's whole life;
	// its HTTP client bounds each exchange.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: cfg.Timeout})
	ts, err := externalaccount.NewTokenSource(ctx, externalaccount.Config{
		Audience:         AudiencePrefix + path,
		SubjectTokenType: SubjectTokenType,
		TokenURL:         cfg.TokenURL,
		Scopes:           []string{Scope},
		CredentialSource: &externalaccount.CredentialSource{File: cfg.TokenFile},
	})
	if err != nil {
		return nil, fmt.Errorf("external account credentials for %s: %w", path, err)
	}
	return ts, nil
}

// Check gets an access token from ts, bounded by ctx as well as by the
// exchange's own timeout, so that a refused exchange (a condition the
// attestation does not satisfy, an unknown provider) is reported when the
// credentials are set up rather than at their first use.
func Check(ctx context.Context, cfg Config, ts oauth2.TokenSource, path string) error {
	cfg = cfg.withDefaults()
	done := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("no access token for workload identity provider %s: exchanging the attestation token (%s) at the Security Token Service %s failed: %w", path, cfg.TokenFile, cfg.TokenURL, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no access token for workload identity provider %s: the Security Token Service %s did not answer in time: %w", path, cfg.TokenURL, ctx.Err())
	}
}
