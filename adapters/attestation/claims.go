// Package attestation connects Sigil's attested channel to Google
// Confidential Space: on the enclave's side, a client of the Confidential
// Space launcher's token endpoint (a Unix socket) and a Source that keeps a
// custom attestation token, bound to the enclave's TLS key, renewed before
// it expires; on the daemon's side, a Verifier that authenticates a token
// (RS256 with the issuer's published keys, or a PKI token's x5c chain to a
// configured root), decodes its claims and hands them to the pure decision
// of domain/attestation. Socket path, issuer, keys and PKI root are
// configuration, which is how tests and private deployments point it at
// fakes (adapters/attestation/attestationtest).
package attestation

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigil-signer/sigil/domain/attestation"
)

// stringOrList decodes a claim that is a string or an array of strings
// (eat_nonce).
type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("eat_nonce: want a string or an array of strings")
	}
	*s = many
	return nil
}

// googleClaims is the JSON shape of a Confidential Space token's payload,
// as far as Sigil reads it (other claims are ignored).
type googleClaims struct {
	jwt.RegisteredClaims
	EatNonce stringOrList `json:"eat_nonce"`
	SWName   string       `json:"swname"`
	DbgStat  string       `json:"dbgstat"`
	Submods  struct {
		ConfidentialSpace struct {
			SupportAttributes []string `json:"support_attributes"`
		} `json:"confidential_space"`
		Container struct {
			ImageReference string            `json:"image_reference"`
			ImageDigest    string            `json:"image_digest"`
			Env            map[string]string `json:"env"`
		} `json:"container"`
		GCE struct {
			ProjectID    string `json:"project_id"`
			Zone         string `json:"zone"`
			InstanceName string `json:"instance_name"`
		} `json:"gce"`
	} `json:"submods"`
}

func timeOf(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.Time
}

// domainClaims converts the decoded payload into the domain's Claims.
func (g *googleClaims) domainClaims() attestation.Claims {
	return attestation.Claims{
		Issuer:            g.Issuer,
		Audience:          g.Audience,
		IssuedAt:          timeOf(g.IssuedAt),
		NotBefore:         timeOf(g.NotBefore),
		Expiry:            timeOf(g.ExpiresAt),
		Nonces:            g.EatNonce,
		SoftwareName:      g.SWName,
		DebugStatus:       g.DbgStat,
		SupportAttributes: g.Submods.ConfidentialSpace.SupportAttributes,
		ImageDigest:       g.Submods.Container.ImageDigest,
		ImageReference:    g.Submods.Container.ImageReference,
		Env:               g.Submods.Container.Env,
		ProjectID:         g.Submods.GCE.ProjectID,
		Zone:              g.Submods.GCE.Zone,
		InstanceName:      g.Submods.GCE.InstanceName,
	}
}

// Token is an attestation token as the enclave holds it: the compact JWT and
// the times it read from it (not verified: the launcher is part of the
// enclave's own trusted base), plus when it was received (local clock).
type Token struct {
	Raw      string
	IssuedAt time.Time
	Expiry   time.Time
	Fetched  time.Time
}

// ValidAt reports whether the token has not expired at now.
func (t Token) ValidAt(now time.Time) bool { return t.Raw != "" && now.Before(t.Expiry) }

// readToken reads the times of a token from the launcher and checks that
// it is the token asked for: exp and iat present and ordered, the audience
// and every requested nonce echoed.
func readToken(raw string, req TokenRequest, fetched time.Time) (Token, error) {
	var g googleClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &g); err != nil {
		return Token{}, fmt.Errorf("launcher token: %v", err)
	}
	c := g.domainClaims()
	switch {
	case c.Expiry.IsZero() || c.IssuedAt.IsZero():
		return Token{}, fmt.Errorf("launcher token: no exp or no iat")
	case !c.IssuedAt.Before(c.Expiry):
		return Token{}, fmt.Errorf("launcher token: iat %v is not before exp %v", c.IssuedAt, c.Expiry)
	}
	if !slices.Contains(c.Audience, req.Audience) {
		return Token{}, fmt.Errorf("launcher token: audience %q, asked for %q", c.Audience, req.Audience)
	}
	for _, n := range req.Nonces {
		if !slices.Contains(c.Nonces, n) {
			return Token{}, fmt.Errorf("launcher token: nonce %q missing (got %q)", n, c.Nonces)
		}
	}
	return Token{Raw: raw, IssuedAt: c.IssuedAt, Expiry: c.Expiry, Fetched: fetched}, nil
}
