// Package attestation holds the pure decisions of Sigil's attested channel
// between the daemon and a Confidential Space enclave: whether the claims of
// an attestation token satisfy what the daemon expects of the enclave it is
// talking to (issuer, audience, lifetime, the nonce that binds the token to
// the TLS key of the connection, a production Confidential Space image, the
// workload's image digest, and a launch configuration that admits this
// daemon's key), and the public-key pins both ends use. Decoding tokens and
// checking their signatures is the adapters' business (adapters/attestation);
// this package sees claims that were already authenticated.
package attestation

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Claim names as they appear in a token (and in ClaimError.Claim).
const (
	ClaimIssuer            = "iss"
	ClaimAudience          = "aud"
	ClaimExpiry            = "exp"
	ClaimNotBefore         = "nbf"
	ClaimIssuedAt          = "iat"
	ClaimNonce             = "eat_nonce"
	ClaimSoftwareName      = "swname"
	ClaimDebugStatus       = "dbgstat"
	ClaimSupportAttributes = "submods.confidential_space.support_attributes"
	ClaimImageDigest       = "submods.container.image_digest"
	ClaimEnv               = "submods.container.env"
)

// Values a production Confidential Space token carries.
const (
	// DefaultIssuer is Google's Confidential Computing attestation service.
	DefaultIssuer = "https://confidentialcomputing.googleapis.com"
	// SoftwareConfidentialSpace is the swname of Confidential Space images.
	SoftwareConfidentialSpace = "CONFIDENTIAL_SPACE"
	// DebugDisabledSinceBoot is the dbgstat of production images (debug
	// images say "enabled").
	DebugDisabledSinceBoot = "disabled-since-boot"
	// SupportStable is the support attribute of a supported production
	// image (debug images have no support attribute).
	SupportStable = "STABLE"
	// DefaultClientPinsEnv is the environment variable of the enclave's
	// launch configuration that lists the pins of the clients it admits.
	DefaultClientPinsEnv = "SIGIL_ENCLAVE_CLIENT_PINS"
)

// Claims are the claims of an authenticated attestation token that the
// channel's decision reads. Times are zero when the claim is absent.
type Claims struct {
	Issuer            string
	Audience          []string
	IssuedAt          time.Time
	NotBefore         time.Time
	Expiry            time.Time
	Nonces            []string          // eat_nonce (a string or an array in the token)
	SoftwareName      string            // swname
	DebugStatus       string            // dbgstat
	SupportAttributes []string          // submods.confidential_space.support_attributes
	ImageDigest       string            // submods.container.image_digest
	ImageReference    string            // submods.container.image_reference (informational)
	Env               map[string]string // submods.container.env
	// Informational: where the workload runs (submods.gce).
	ProjectID    string
	Zone         string
	InstanceName string
}

// Expectations is what a daemon requires of the token of the enclave it
// connects to. Issuer, Audience, ImageDigests and KeyNonce are required;
// ClientPinsEnv and ClientPin go together (both set: the token's launch
// environment must list the daemon's pin).
type Expectations struct {
	Issuer       string
	Audience     string
	ImageDigests []string // allow-list, each "sha256:" + 64 lowercase hex digits
	// KeyNonce is NonceOf the SubjectPublicKeyInfo of the TLS key the
	// connection actually uses: the token must carry it in eat_nonce.
	KeyNonce string
	// ClientPinsEnv names the launch environment variable that lists the
	// pins of the clients the enclave admits; ClientPin is this daemon's.
	ClientPinsEnv string
	ClientPin     Pin
	// Leeway tolerates a token issued slightly in the future by the
	// daemon's clock (iat, nbf). Expiry gets none: a connection is usable
	// until exp and not a moment longer, and an enclave serves tokens with
	// half their lifetime left, so clock skew below that costs nothing.
	Leeway time.Duration
}

// MaxLeeway bounds Expectations.Leeway.
const MaxLeeway = 5 * time.Minute

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether d is an image digest as tokens carry it:
// "sha256:" followed by 64 lowercase hex digits.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// Validate checks the static part of e (everything but KeyNonce, which is
// per connection); errors name the setting.
func (e Expectations) Validate() error {
	switch {
	case e.Issuer == "":
		return fmt.Errorf("attestation: no issuer")
	case e.Audience == "":
		return fmt.Errorf("attestation: no audience")
	case len(e.ImageDigests) == 0:
		return fmt.Errorf("attestation: no image digest allowed (image_digests is empty)")
	case e.Leeway < 0 || e.Leeway > MaxLeeway:
		return fmt.Errorf("attestation: leeway %v is out of range (allowed: 0 to %v)", e.Leeway, MaxLeeway)
	case (e.ClientPinsEnv == "") != (e.ClientPin == Pin{}):
		return fmt.Errorf("attestation: the client pin and the name of the environment variable listing pins go together")
	}
	for _, d := range e.ImageDigests {
		if !ValidDigest(d) {
			return fmt.Errorf("attestation: image digest %q is not sha256: followed by 64 lowercase hex digits", d)
		}
	}
	return nil
}

// ClaimError is the refusal of a token: the first claim that failed, what
// was expected and what the token said. Every claim Check reads is public
// (a token is shown to any client before it authenticates), so Want and Got
// are safe to log.
type ClaimError struct {
	Claim string
	Want  string
	Got   string
}

func (e *ClaimError) Error() string {
	return fmt.Sprintf("attestation token refused: claim %s: got %s, want %s", e.Claim, e.Got, e.Want)
}

const absent = "(absent)"

func quoted(s string) string {
	if s == "" {
		return absent
	}
	return fmt.Sprintf("%q", s)
}

func list(ss []string) string {
	if len(ss) == 0 {
		return absent
	}
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return absent
	}
	return t.UTC().Format(time.RFC3339)
}

// Check decides whether claims satisfy e at time now. It returns nil, or a
// *ClaimError naming the first claim that fails, in this order: iss, aud,
// exp, nbf, iat, eat_nonce, swname, dbgstat, support_attributes,
// image_digest, the client pins of the launch environment. An e that fails
// Validate, or an empty KeyNonce, refuses every token.
func Check(c Claims, e Expectations, now time.Time) error {
	if err := e.Validate(); err != nil {
		return &ClaimError{Claim: "(expectations)", Want: "valid expectations", Got: err.Error()}
	}
	if e.KeyNonce == "" {
		return &ClaimError{Claim: ClaimNonce, Want: "the hash of the connection's key", Got: "no key to compare with"}
	}
	if strings.TrimSuffix(c.Issuer, "/") != strings.TrimSuffix(e.Issuer, "/") {
		return &ClaimError{Claim: ClaimIssuer, Want: quoted(e.Issuer), Got: quoted(c.Issuer)}
	}
	if !slices.Contains(c.Audience, e.Audience) {
		return &ClaimError{Claim: ClaimAudience, Want: quoted(e.Audience), Got: list(c.Audience)}
	}
	switch {
	case c.Expiry.IsZero():
		return &ClaimError{Claim: ClaimExpiry, Want: "an expiry", Got: absent}
	case !now.Before(c.Expiry):
		return &ClaimError{Claim: ClaimExpiry, Want: "a time after now (the token has expired)", Got: stamp(c.Expiry)}
	}
	if !c.NotBefore.IsZero() && c.NotBefore.After(now.Add(e.Leeway)) {
		return &ClaimError{Claim: ClaimNotBefore, Want: fmt.Sprintf("not after now + leeway %v (a token from the future: is this host's clock behind?)", e.Leeway), Got: stamp(c.NotBefore)}
	}
	switch {
	case c.IssuedAt.IsZero():
		return &ClaimError{Claim: ClaimIssuedAt, Want: "an issue time", Got: absent}
	case c.IssuedAt.After(now.Add(e.Leeway)):
		return &ClaimError{Claim: ClaimIssuedAt, Want: fmt.Sprintf("not after now + leeway %v (a token from the future: is this host's clock behind?)", e.Leeway), Got: stamp(c.IssuedAt)}
	case !c.IssuedAt.Before(c.Expiry):
		return &ClaimError{Claim: ClaimIssuedAt, Want: "before exp " + stamp(c.Expiry), Got: stamp(c.IssuedAt)}
	}
	if !slices.Contains(c.Nonces, e.KeyNonce) {
		return &ClaimError{Claim: ClaimNonce, Want: fmt.Sprintf("a nonce equal to %q, the hash of the TLS key of this connection (the token is bound to another key)", e.KeyNonce), Got: list(c.Nonces)}
	}
	if c.SoftwareName != SoftwareConfidentialSpace {
		return &ClaimError{Claim: ClaimSoftwareName, Want: quoted(SoftwareConfidentialSpace), Got: quoted(c.SoftwareName)}
	}
	if c.DebugStatus != DebugDisabledSinceBoot {
		return &ClaimError{Claim: ClaimDebugStatus, Want: quoted(DebugDisabledSinceBoot) + " (a production image)", Got: quoted(c.DebugStatus)}
	}
	if !slices.Contains(c.SupportAttributes, SupportStable) {
		return &ClaimError{Claim: ClaimSupportAttributes, Want: "a list containing " + quoted(SupportStable) + " (a supported production image)", Got: list(c.SupportAttributes)}
	}
	if !slices.Contains(e.ImageDigests, c.ImageDigest) {
		return &ClaimError{Claim: ClaimImageDigest, Want: "one of " + list(e.ImageDigests), Got: quoted(c.ImageDigest)}
	}
	if e.ClientPinsEnv != "" {
		claim := ClaimEnv + "." + e.ClientPinsEnv
		want := "a pin list containing " + e.ClientPin.String() + " (this daemon's key)"
		v, ok := c.Env[e.ClientPinsEnv]
		if !ok {
			return &ClaimError{Claim: claim, Want: want, Got: absent}
		}
		pins, err := ParsePins(v)
		if err != nil {
			return &ClaimError{Claim: claim, Want: want, Got: fmt.Sprintf("%q (%v)", v, err)}
		}
		if !ContainsPin(pins, e.ClientPin) {
			return &ClaimError{Claim: claim, Want: want, Got: quoted(v)}
		}
	}
	return nil
}
