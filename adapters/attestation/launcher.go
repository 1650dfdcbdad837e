package attestation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultLauncherSocket is where the Confidential Space launcher serves its
// token endpoint inside the workload's container.
const DefaultLauncherSocket = "/run/container_launcher/teeserver.sock"

// TokenType is the kind of token the launcher issues.
type TokenType string

// Token types of the launcher's custom token endpoint.
const (
	TokenOIDC TokenType = "OIDC" // RS256, keys from the issuer's discovery document
	TokenPKI  TokenType = "PKI"  // signed by a certificate whose chain (x5c) ends at Google's attestation root
)

// Limits of a custom token request (Google's documentation).
const (
	MaxAudience   = 512
	MaxNonces     = 6
	MinNonceBytes = 8
	MaxNonceBytes = 88
	// maxTokenBytes bounds the launcher's reply.
	maxTokenBytes = 64 << 10
)

// TokenRequest is the body of POST /v1/token.
type TokenRequest struct {
	Audience  string    `json:"audience"`
	Nonces    []string  `json:"nonces"`
	TokenType TokenType `json:"token_type"`
}

// Validate checks r against the launcher's documented limits, so that a
// misconfiguration fails with a clear error rather than the launcher's.
func (r TokenRequest) Validate() error {
	switch {
	case r.Audience == "":
		return errors.New("token request: no audience (required with nonces)")
	case len(r.Audience) > MaxAudience:
		return fmt.Errorf("token request: audience of %d bytes (at most %d)", len(r.Audience), MaxAudience)
	case len(r.Nonces) > MaxNonces:
		return fmt.Errorf("token request: %d nonces (at most %d)", len(r.Nonces), MaxNonces)
	case r.TokenType != TokenOIDC && r.TokenType != TokenPKI:
		return fmt.Errorf("token request: token type %q (want %s or %s)", r.TokenType, TokenOIDC, TokenPKI)
	}
	for i, n := range r.Nonces {
		if len(n) < MinNonceBytes || len(n) > MaxNonceBytes {
			return fmt.Errorf("token request: nonce %d has %d bytes (allowed: %d to %d)", i+1, len(n), MinNonceBytes, MaxNonceBytes)
		}
	}
	return nil
}

// ParseTokenType parses "OIDC" or "PKI" ("" is OIDC).
func ParseTokenType(s string) (TokenType, error) {
	switch strings.ToUpper(s) {
	case "", string(TokenOIDC):
		return TokenOIDC, nil
	case string(TokenPKI):
		return TokenPKI, nil
	}
	return "", fmt.Errorf("token type %q: want %s or %s", s, TokenOIDC, TokenPKI)
}

// Launcher is a client of the launcher's token endpoint: HTTP over a Unix
// socket.
type Launcher struct {
	socket string
	client *http.Client
}

// NewLauncher returns a client of the launcher listening on socket
// (DefaultLauncherSocket if empty).
func NewLauncher(socket string) *Launcher {
	if socket == "" {
		socket = DefaultLauncherSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives:     true,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	return &Launcher{socket: socket, client: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client dials.
func (l *Launcher) Socket() string { return l.socket }

// Token asks the launcher for a custom token. ctx bounds the call. Errors
// name the socket and, for a refusal, the launcher's status and message.
func (l *Launcher) Token(ctx context.Context, r TokenRequest) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/v1/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("launcher %s: %w", l.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("launcher %s: reading the reply: %w", l.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return "", fmt.Errorf("launcher %s: POST /v1/token: %s: %q", l.socket, resp.Status, msg)
	}
	if len(data) > maxTokenBytes {
		return "", fmt.Errorf("launcher %s: token longer than %d bytes", l.socket, maxTokenBytes)
	}
	tok := strings.TrimSpace(string(data))
	if strings.Count(tok, ".") != 2 {
		return "", fmt.Errorf("launcher %s: the reply is not a JWT (%d bytes)", l.socket, len(data))
	}
	return tok, nil
}
