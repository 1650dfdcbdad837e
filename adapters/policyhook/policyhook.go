// Package policyhook is the HTTP client of an external policy service, as
// Signatory calls it (policy_hook): every sign request the key's policy
// allows is POSTed as JSON {request, source, public_key_hash,
// client_key_hash, nonce} (bytes in base64, a fresh 32-byte nonce) to the
// configured address, and only a 2xx reply approves it. With authorized
// keys, the reply must be {payload, signature} whose payload carries the
// same HTTP status and nonce and the hash of the key that signed it, one of
// those keys, with a signature over the payload's bytes as received. A
// refusal (4xx) or a reply that fails authentication is
// domain.KindForbidden (403); a hook that is down, slow (bounded timeout),
// redirects, answers 5xx or garbage is an error too (500, as Signatory
// answers): never an approval.
package policyhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// DefaultTimeout bounds one call of the hook when the configuration sets
// none (a Sigil extension; Signatory waits forever).
const DefaultTimeout = 5 * time.Second

// MaxReply bounds the reply body read from the hook.
const MaxReply = 64 << 10

// NonceSize is the length of the nonce sent with every request.
const NonceSize = 32

// Config configures the hook client.
type Config struct {
	// Address is the hook's URL (http or https).
	Address string
	// AuthorizedKeys, when non-empty, are the keys whose signature a reply
	// must carry; without them only the HTTP status is inspected.
	AuthorizedKeys []tezos.PublicKey
	// Timeout bounds one call (connection, request and reply); zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Transport overrides the HTTP transport (tests); nil uses a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Dial overrides how Healthy connects (tests); nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives one debug line per decision; nil discards.
	Logger *slog.Logger
}

// Hook calls the policy service. It implements ports.PolicyHook.
type Hook struct {
	url     string
	probe   probe
	keys    map[tezos.PublicKeyHash]tezos.PublicKey
	timeout time.Duration
	client  *http.Client
	log     *slog.Logger
}

var _ ports.PolicyHook = (*Hook)(nil)

// CheckAddress validates a hook address: an absolute http or https URL.
func CheckAddress(addr string) error {
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL (for example http://127.0.0.1:8080/policy)", domain.Echo(addr))
	}
	return nil
}

// New returns a hook client.
func New(cfg Config) (*Hook, error) {
	if err := CheckAddress(cfg.Address); err != nil {
		return nil, fmt.Errorf("policy_hook.address: %w", err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("policy_hook.timeout: %v is negative", cfg.Timeout)
	}
	h := &Hook{url: cfg.Address, timeout: cfg.Timeout, log: cfg.Logger, probe: newProbe(cfg.Address, cfg.Dial)}
	if h.timeout == 0 {
		h.timeout = DefaultTimeout
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.AuthorizedKeys) > 0 {
		h.keys = make(map[tezos.PublicKeyHash]tezos.PublicKey, len(cfg.AuthorizedKeys))
		for _, k := range cfg.AuthorizedKeys {
			h.keys[k.Hash()] = k
		}
	}
	tr := cfg.Transport
	if tr == nil {
		// The hook's address is the configuration's, reached directly:
		// HTTP_PROXY/HTTPS_PROXY in the daemon's environment must not route
		// the approval of a signature through another party.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		tr = t
	}
	if t, ok := tr.(*http.Transport); ok && t.TLSClientConfig != nil {
		h.probe.tls = t.TLSClientConfig
	}
	h.client = &http.Client{
		Transport: tr,
		// A redirect is not an approval: the reply that counts is the
		// configured address's own.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h, nil
}

// Authenticated reports whether replies must be signed.
func (h *Hook) Authenticated() bool { return len(h.keys) > 0 }

// request is the JSON body sent to the hook, field for field Signatory's
// PolicyHookRequest ([]byte fields are base64).
type request struct {
	Request       []byte `json:"request"`
	Source        string `json:"source"`
	ClientKeyHash string `json:"client_key_hash,omitempty"`
	PublicKeyHash string `json:"public_key_hash"`
	Nonce         []byte `json:"nonce"`
}

// Reply is an authenticated reply: the payload exactly as received, and its
// signature (Signatory's PolicyHookReply).
type Reply struct {
	Payload   json.RawMessage `json:"payload"`
	Signature string          `json:"signature"`
}

// ReplyPayload is what an authenticated reply's payload carries
// (Signatory's PolicyHookReplyPayload).
type ReplyPayload struct {
	// Status must be the reply's HTTP status code.
	Status int `json:"status"`
	// Error is an optional reason for a refusal.
	Error string `json:"error"`
	// PublicKeyHash names the key that signed the payload.
	PublicKeyHash string `json:"public_key_hash"`
	// Nonce is the request's nonce.
	Nonce []byte `json:"nonce"`
}

func refused(format string, args ...any) error {
	return domain.Errorf(domain.KindForbidden, format, args...)
}

// failed is a hook failure that is not a refusal: 500, as Signatory.
// Causes are formatted, not wrapped, so that a timeout is not mistaken for
// the client's own.
func failed(format string, args ...any) error {
	return domain.Errorf(domain.KindInternal, format, args...)
}

// Approve asks the hook about req.
func (h *Hook) Approve(ctx context.Context, req ports.HookRequest) error {
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return failed("policy hook: generating a nonce: %v", err)
	}
	body := request{Request: req.Message, Source: req.Source, PublicKeyHash: req.PKH.String(), Nonce: nonce}
	if !req.ClientKeyHash.IsZero() {
		body.ClientKeyHash = req.ClientKeyHash.String()
	}
	raw, err := json.Marshal(&body)
	if err != nil {
		return failed("policy hook: encoding the request: %v", err)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	late := func() error {
		if parent.Err() != nil {
			return failed("policy hook: the sign request was cancelled: %v", parent.Err())
		}
		return failed("policy hook did not answer within %v: the request is refused", h.timeout)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(raw))
	if err != nil {
		return failed("policy hook: building the request: %v", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return late()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return failed("policy hook unreachable: %v: the request is refused", err)
	}
	defer resp.Body.Close()
	status := resp.StatusCode
	if !h.Authenticated() {
		// Only the status counts; the body is drained (bounded) so that
		// the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxReply))
		return h.decide(ctx, req, status, resp.Status, "")
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReply+1))
	if err != nil {
		if ctx.Err() != nil {
			return late()
		}
		return failed("policy hook: reading the reply: %v", err)
	}
	if len(data) > MaxReply {
		return failed("policy hook reply exceeds %d bytes: the request is refused", MaxReply)
	}
	pl, err := h.verify(data, status, nonce)
	if err != nil {
		return err
	}
	return h.decide(ctx, req, status, resp.Status, pl.Error)
}

// verify authenticates a reply and returns its payload.
func (h *Hook) verify(data []byte, status int, nonce []byte) (*ReplyPayload, error) {
	var reply Reply
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, failed("policy hook reply (HTTP %d) is not the JSON object {payload, signature}: %s", status, domain.Echo(err.Error()))
	}
	if len(reply.Payload) == 0 || string(reply.Payload) == "null" {
		return nil, refused("policy hook reply not authenticated: no payload")
	}
	var pl ReplyPayload
	if err := json.Unmarshal(reply.Payload, &pl); err != nil {
		return nil, refused("policy hook reply not authenticated: malformed payload: %s", domain.Echo(err.Error()))
	}
	if pl.Status != status {
		return nil, refused("policy hook reply not authenticated: payload status %d differs from the HTTP status %d", pl.Status, status)
	}
	if !bytes.Equal(pl.Nonce, nonce) {
		return nil, refused("policy hook reply not authenticated: nonce mismatch (a replayed or forged reply)")
	}
	pkh, err := tezos.ParsePublicKeyHash(pl.PublicKeyHash)
	if err != nil {
		return nil, refused("policy hook reply not authenticated: public_key_hash %q: %v", domain.Echo(pl.PublicKeyHash), err)
	}
	pk, ok := h.keys[pkh]
	if !ok {
		return nil, refused("policy hook reply not authenticated: signed by %s, which is not in policy_hook.authorized_keys", pkh)
	}
	sig, err := tezos.ParseSignature(reply.Signature)
	if err != nil {
		return nil, refused("policy hook reply not authenticated: signature: %v", err)
	}
	if !verifies(pk, reply.Payload, sig) {
		return nil, refused("policy hook reply not authenticated: invalid signature by %s", pkh)
	}
	return &pl, nil
}

// verifies checks sig over msg; a BLS key may sign with either scheme
// (current gotez signs with the proof-of-possession one, older with the
// augmented one).
func verifies(pk tezos.PublicKey, msg []byte, sig tezos.Signature) bool {
	if pk.Verify(msg, sig, tezos.SignVersion2) == nil {
		return true
	}
	return pk.Type == tezos.BLS && pk.Verify(msg, sig, tezos.SignVersion1) == nil
}

// decide turns an (authenticated, if required) status into the answer.
func (h *Hook) decide(ctx context.Context, req ports.HookRequest, status int, statusText, reason string) error {
	if status/100 == 2 {
		h.log.DebugContext(ctx, "policy hook approved the request", "pkh", req.PKH.String(), "status", status)
		return nil
	}
	msg := clean(statusText)
	if r := clean(reason); r != "" {
		msg = r
	}
	if status/100 == 4 {
		return refused("policy hook refused the request: %s", msg)
	}
	if status/100 == 3 {
		return failed("policy hook answered %s (redirects are not followed): the request is refused", clean(statusText))
	}
	return failed("policy hook answered %s: the request is refused", msg)
}

// clean bounds and de-controls a text from the hook before it reaches a
// client or a log line.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	s = strings.TrimSpace(s)
	const max = 200
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}
