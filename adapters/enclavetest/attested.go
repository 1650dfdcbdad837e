package enclavetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	adattest "github.com/sigil-signer/sigil/adapters/attestation"
	"github.com/sigil-signer/sigil/adapters/attestation/attestationtest"
	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
)

// AttestedOptions describe an enclave serving the attested channel in the
// test's process (StartAttested).
type AttestedOptions struct {
	// Mode is the platform whose Initialize the enclave accepts (default
	// ModeConfidentialSpace).
	Mode enclave.Platform
	// Lifetime of the launcher's tokens (default 1 h; whole seconds).
	Lifetime time.Duration
	// Workload, if set, edits the workload the fake launcher attests
	// (another image digest, a debug image…) before the enclave starts.
	Workload func(*attestationtest.Workload)
	// Forge, if set, makes the enclave serve one token of its own instead
	// of the launcher's (a compromised or misconfigured enclave): the
	// issuer's claims for the enclave's key and the workload, edited by
	// Forge (an expiry in the past, another key's nonce…), signed with the
	// issuer's key.
	Forge func(jwt.MapClaims)
}

// Attested is what a daemon needs to reach an attested enclave: its
// address (Mock.Addr) and the vault's attested_channel settings, which
// point at the fake issuer (its CA) and at the daemon's key file, whose pin
// the enclave's launch environment lists.
type Attested struct {
	// Settings is the vault's attested_channel section.
	Settings securechannel.ClientSettings
	// Issuer is the fake Google attestation service; Launcher the fake
	// launcher's token endpoint the enclave asks (Update, SetFailing).
	Issuer   *attestationtest.Issuer
	Launcher *attestationtest.Launcher
	// Pin is the daemon key's pin; Channel the current enclave's side of
	// the channel (replaced by Restart).
	Pin     attestation.Pin
	Channel *securechannel.Server
	forge   func(jwt.MapClaims)
}

// StartAttested starts an in-process enclave (the stack StartMock builds)
// serving the attested channel (enclaveserver.ServeAttested) on a free
// loopback port: its ephemeral key's tokens come from a fake launcher
// signed by a fake issuer, and it admits the daemon key it made in
// t.TempDir(). Restart makes a new ephemeral key and token, as a real
// restart does. It is closed at the end of t.
func StartAttested(t testing.TB, o AttestedOptions) *Mock {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "enclave-client.key")
	key, err := securechannel.GenerateClientKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	iss := attestationtest.NewIssuer(t)
	ca := filepath.Join(dir, "issuer-ca.pem")
	if err := os.WriteFile(ca, iss.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	w := attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: key.Pin.String()},
		Lifetime:    o.Lifetime,
	}
	if o.Workload != nil {
		o.Workload(&w)
	}
	att := &Attested{
		Settings: securechannel.ClientSettings{
			ClientKeyFile: keyFile,
			ImageDigests:  []string{attestationtest.Digest},
			Issuer:        iss.URL,
			IssuerCAFile:  ca,
			Leeway:        "1s",
		},
		Issuer:   iss,
		Launcher: attestationtest.NewLauncher(t, iss, w),
		Pin:      key.Pin,
		forge:    o.Forge,
	}
	mode := o.Mode
	if mode == "" {
		mode = ModeConfidentialSpace
	}
	m := &Mock{KMSFile: filepath.Join(dir, "kms.key"), mode: mode, Attested: att}
	m.start(t, "127.0.0.1:0", m.KMSFile)
	t.Cleanup(func() { m.Stop() })
	return m
}

// open makes the enclave's side of the channel: a new ephemeral key, and
// its first token from the launcher (or the forged one).
func (a *Attested) open(t testing.TB) *securechannel.Server {
	t.Helper()
	if a.forge == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv, err := securechannel.OpenServer(ctx, securechannel.ServerSettings{
			LauncherSocket: a.Launcher.Socket,
			ClientPins:     a.Pin.String(),
			RetryInitial:   50 * time.Millisecond,
			RetryMax:       200 * time.Millisecond,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	key, nonce, err := securechannel.NewEphemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	w := attestationtest.Workload{
		ImageDigest: attestationtest.Digest,
		Env:         map[string]string{attestation.DefaultClientPinsEnv: a.Pin.String()},
	}
	claims := a.Issuer.Claims(w, securechannel.DefaultAudience, []string{nonce})
	a.forge(claims)
	tok := adattest.Token{Raw: a.Issuer.Sign(claims, attestationtest.SignIssuer), IssuedAt: unixClaim(claims["iat"]), Expiry: unixClaim(claims["exp"]), Fetched: time.Now()}
	if tok.Expiry.Before(time.Now()) {
		tok.Expiry = time.Now().Add(time.Hour) // the certificate's validity; the token says otherwise
	}
	srv, err := securechannel.NewServer(securechannel.ServerConfig{Key: key, Tokens: staticToken{tok}, ClientPins: []attestation.Pin{a.Pin}})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// staticToken serves one token, whatever it says.
type staticToken struct{ tok adattest.Token }

func (s staticToken) Current() (adattest.Token, error) { return s.tok, nil }

// OtherKeyNonce returns the nonce of a key the enclave does not hold (a
// token bound to another TLS key).
func OtherKeyNonce(t testing.TB) string {
	t.Helper()
	_, nonce, err := securechannel.NewEphemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	return nonce
}

func unixClaim(v any) time.Time {
	switch n := v.(type) {
	case int64:
		return time.Unix(n, 0)
	case float64:
		return time.Unix(int64(n), 0)
	case int:
		return time.Unix(int64(n), 0)
	}
	return time.Time{}
}
