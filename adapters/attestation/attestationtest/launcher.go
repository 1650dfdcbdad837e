package attestationtest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Digest is a well-formed image digest for tests.
const Digest = "sha256:5d3a2f0c9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060f1e"

// Workload describes the workload the fake launcher attests.
type Workload struct {
	ImageDigest       string
	ImageReference    string
	Env               map[string]string // submods.container.env
	Debug             bool              // dbgstat "enabled" and no support attribute
	SupportAttributes []string          // default LATEST, STABLE, USABLE (production)
	Lifetime          time.Duration     // default 1 h; whole seconds
	Signer            Signer            // default the issuer's key (SignPKI is used for PKI requests)
	// Mutate, if set, edits the claims of each token after they are
	// built (tests: another audience, issuer, nonce, expiry…).
	Mutate func(jwt.MapClaims)
}

// Launcher is a fake Confidential Space launcher's token endpoint on a
// Unix socket.
type Launcher struct {
	// Socket is the path of the Unix socket.
	Socket string

	iss      *Issuer
	mu       sync.Mutex
	w        Workload
	failing  bool
	delay    time.Duration
	requests atomic.Int64
	issued   atomic.Int64
}

// NewLauncher starts a launcher attesting w, with tokens from iss, stopped
// when the test ends.
func NewLauncher(t testing.TB, iss *Issuer, w Workload) *Launcher {
	t.Helper()
	// Unix socket paths are limited to about 100 bytes: t.TempDir() can be
	// longer, so the socket lives in a short directory of its own.
	dir, err := os.MkdirTemp("", "sigil-launcher-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l := &Launcher{Socket: filepath.Join(dir, "teeserver.sock"), iss: iss, w: w}
	ln, err := net.Listen("unix", l.Socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/token", l.token)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l
}

// SetWorkload replaces the attested workload for the next tokens.
func (l *Launcher) SetWorkload(w Workload) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

// Update edits the attested workload for the next tokens.
func (l *Launcher) Update(f func(*Workload)) {
	l.mu.Lock()
	f(&l.w)
	l.mu.Unlock()
}

// SetFailing makes the launcher answer 503 (true) or tokens (false).
func (l *Launcher) SetFailing(f bool) {
	l.mu.Lock()
	l.failing = f
	l.mu.Unlock()
}

// SetDelay makes the launcher wait d before answering (a hung launcher).
func (l *Launcher) SetDelay(d time.Duration) {
	l.mu.Lock()
	l.delay = d
	l.mu.Unlock()
}

// Requests returns the number of token requests received; Issued the number
// of tokens returned.
func (l *Launcher) Requests() int { return int(l.requests.Load()) }

// Issued returns the number of tokens the launcher returned.
func (l *Launcher) Issued() int { return int(l.issued.Load()) }

func (l *Launcher) token(w http.ResponseWriter, r *http.Request) {
	l.requests.Add(1)
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		Audience  string   `json:"audience"`
		Nonces    []string `json:"nonces"`
		TokenType string   `json:"token_type"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := checkRequest(req.Audience, req.Nonces, req.TokenType); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	wl, failing, delay := l.w, l.failing, l.delay
	l.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if failing {
		http.Error(w, "attestation service unavailable", http.StatusServiceUnavailable)
		return
	}
	claims := l.iss.Claims(wl, req.Audience, req.Nonces)
	if wl.Mutate != nil {
		wl.Mutate(claims)
	}
	signer := wl.Signer
	if req.TokenType == "PKI" && signer == SignIssuer {
		signer = SignPKI
	}
	tok := l.iss.Sign(claims, signer)
	l.issued.Add(1)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, tok)
}

// checkRequest applies the limits Google documents for custom tokens.
func checkRequest(aud string, nonces []string, typ string) error {
	switch {
	case len(nonces) > 0 && aud == "":
		return errors.New("audience is required when nonces are given")
	case len(aud) > 512:
		return errors.New("audience longer than 512 bytes")
	case len(nonces) > 6:
		return errors.New("at most 6 nonces")
	case typ != "OIDC" && typ != "PKI" && typ != "":
		return errors.New("token_type must be OIDC or PKI")
	}
	for _, n := range nonces {
		if len(n) < 8 || len(n) > 88 {
			return errors.New("each nonce must be 8 to 88 bytes")
		}
	}
	return nil
}

// Claims builds the claims of a Confidential Space token for w with the
// given audience and nonces, issued now, Google-shaped: eat_nonce is a
// string for one nonce and an array for several, as the launcher echoes
// them.
func (i *Issuer) Claims(w Workload, aud string, nonces []string) jwt.MapClaims {
	now := time.Now().Truncate(time.Second)
	life := w.Lifetime
	if life <= 0 {
		life = time.Hour
	}
	dbg, support := "disabled-since-boot", w.SupportAttributes
	if support == nil {
		support = []string{"LATEST", "STABLE", "USABLE"}
	}
	if w.Debug {
		dbg, support = "enabled", []string{}
	}
	digest := w.ImageDigest
	if digest == "" {
		digest = Digest
	}
	ref := w.ImageReference
	if ref == "" {
		ref = "us-west1-docker.pkg.dev/test-project/sigil/sigil-enclave@" + digest
	}
	env := map[string]string{
		"PATH":     "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME": "sigil-enclave",
	}
	override := map[string]string{}
	for k, v := range w.Env {
		env[k], override[k] = v, v
	}
	c := jwt.MapClaims{
		"aud":         aud,
		"iss":         i.URL,
		"sub":         "https://www.googleapis.com/compute/v1/projects/test-project/zones/us-west1-b/instances/sigil-enclave",
		"iat":         now.Unix(),
		"nbf":         now.Unix(),
		"exp":         now.Add(life).Unix(),
		"eat_profile": "https://cloud.google.com/confidential-computing/confidential-space/docs/reference/token-claims",
		"secboot":     true,
		"oemid":       11129,
		"hwmodel":     "GCP_AMD_SEV",
		"swname":      "CONFIDENTIAL_SPACE",
		"swversion":   []string{"250301"},
		"dbgstat":     dbg,
		"submods": map[string]any{
			"confidential_space": map[string]any{
				"support_attributes": support,
				"monitoring_enabled": map[string]any{"memory": false},
			},
			"container": map[string]any{
				"image_reference": ref,
				"image_digest":    digest,
				"image_id":        "sha256:" + strings.Repeat("0", 64),
				"restart_policy":  "Always",
				"args":            []string{"/sigil-enclave", "--listen", ":2000", "--kms", "gcp"},
				"env":             env,
				"env_override":    override,
			},
			"gce": map[string]any{
				"zone":           "us-west1-b",
				"project_id":     "test-project",
				"project_number": "123456789012",
				"instance_name":  "sigil-enclave",
				"instance_id":    "1234567890123456789",
			},
		},
		"google_service_accounts": []string{"sigil-enclave@test-project.iam.gserviceaccount.com"},
	}
	switch len(nonces) {
	case 0:
	case 1:
		c["eat_nonce"] = nonces[0]
	default:
		c["eat_nonce"] = nonces
	}
	return c
}
