package gcpauth_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/gcpauth"
	"github.com/sigil-signer/sigil/adapters/kms/gcpkms/gcpkmstest"
)

const wip = "projects/123456789/locations/global/workloadIdentityPools/sigil-pool/providers/sigil-attestation"

func setup(t *testing.T, ttl time.Duration) (gcpauth.Config, *gcpkmstest.STS) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "attestation_verifier_claims_token")
	subject := gcpkmstest.WriteTokenFile(t, file)
	sts := gcpkmstest.NewSTS(t, gcpauth.AudiencePrefix+wip, subject, ttl)
	return gcpauth.Config{TokenFile: file, TokenURL: sts.URL}, sts
}

// TestTokenSource: the attestation token is exchanged for the provider's
// audience; the access token is reused while valid and exchanged again
// once it is within the refresh margin of its expiry (oauth2's 10 s).
func TestTokenSource(t *testing.T) {
	cfg, sts := setup(t, 12*time.Second)
	ts, err := gcpauth.TokenSource(cfg, wip)
	if err != nil {
		t.Fatal(err)
	}
	if err := gcpauth.Check(context.Background(), cfg, ts, wip); err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil || !sts.Valid(tok.AccessToken) {
		t.Fatalf("token %v, %v", tok, err)
	}
	if sts.Issued() != 1 {
		t.Fatalf("%d exchanges for two uses of a valid token", sts.Issued())
	}
	// 12 s tokens are refreshed 10 s before they expire: after 2.5 s, a
	// new exchange.
	time.Sleep(2500 * time.Millisecond)
	tok2, err := ts.Token()
	if err != nil || tok2.AccessToken == tok.AccessToken || sts.Issued() != 2 {
		t.Fatalf("after the refresh margin: %d exchanges, same token %v, %v", sts.Issued(), tok2.AccessToken == tok.AccessToken, err)
	}
	if errs := sts.Errors(); len(errs) > 0 {
		t.Fatalf("the exchange broke the protocol: %v", errs)
	}
}

// TestCheckErrors: a refused exchange, an unknown provider, a missing
// token file, an unreachable service and a hung one are each reported with
// the provider and the service, within the bounds.
func TestCheckErrors(t *testing.T) {
	cfg, sts := setup(t, time.Hour)
	ts, _ := gcpauth.TokenSource(cfg, wip)
	sts.Refuse(http.StatusForbidden, "the attestation does not satisfy the provider's condition")
	err := gcpauth.Check(context.Background(), cfg, ts, wip)
	for _, want := range []string{wip, cfg.TokenFile, sts.URL, "403", "condition"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("refused exchange: %v; want %q named", err, want)
		}
	}
	sts.Refuse(0, "")

	other := strings.Replace(wip, "sigil-attestation", "other", 1)
	ts2, _ := gcpauth.TokenSource(cfg, other)
	if err := gcpauth.Check(context.Background(), cfg, ts2, other); err == nil || !strings.Contains(err.Error(), "invalid_target") {
		t.Fatalf("unknown provider: %v", err)
	}

	missing := cfg
	missing.TokenFile = filepath.Join(t.TempDir(), "absent")
	ts3, _ := gcpauth.TokenSource(missing, wip)
	if err := gcpauth.Check(context.Background(), missing, ts3, wip); err == nil || !strings.Contains(err.Error(), missing.TokenFile) {
		t.Fatalf("missing token file: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	down := cfg
	down.TokenURL = "http://" + addr + "/v1/token"
	ts4, _ := gcpauth.TokenSource(down, wip)
	if err := gcpauth.Check(context.Background(), down, ts4, wip); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("unreachable service: %v", err)
	}

	// A service that never answers: the context bounds Check, the
	// exchange's own timeout bounds the token source.
	// The handler reads the body first (net/http notices a client that
	// went away only once the body is consumed) and also returns when the
	// test ends, so that Close never waits on it.
	stop := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() {
		close(stop)
		hung.CloseClientConnections()
		hung.Close()
	})
	slow := cfg
	slow.TokenURL, slow.Timeout = hung.URL+"/v1/token", 300*time.Millisecond
	ts5, _ := gcpauth.TokenSource(slow, wip)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = gcpauth.Check(ctx, slow, ts5, wip)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("hung service under a 100 ms context: %v after %v", err, time.Since(start))
	}
	start = time.Now()
	_, err = ts5.Token()
	if err == nil || time.Since(start) > 2*time.Second || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("hung service, 300 ms exchange timeout: %v after %v", err, time.Since(start))
	}
}

func TestCheckProviderPath(t *testing.T) {
	for _, bad := range []string{"", "projects/1/locations/global/workloadIdentityPools/p", wip + "/x", "projects/1/locations/global/workloadIdentityPools/p/providers/a b",
		"projects/../locations/global/workloadIdentityPools/p/providers/q?x=1", strings.Repeat("a", 300)} {
		if err := gcpauth.CheckProviderPath(bad); !errors.Is(err, gcpauth.ErrInvalidName) {
			t.Fatalf("%q: %v", bad, err)
		}
		if _, err := gcpauth.TokenSource(gcpauth.Config{}, bad); !errors.Is(err, gcpauth.ErrInvalidName) {
			t.Fatalf("TokenSource(%q): %v", bad, err)
		}
	}
	if err := gcpauth.CheckProviderPath(wip); err != nil {
		t.Fatal(err)
	}
}
