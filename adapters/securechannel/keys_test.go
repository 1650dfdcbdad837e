package securechannel_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/securechannel"
	"github.com/sigil-signer/sigil/domain/attestation"
)

func TestAttestClientKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client.key")
	k, err := securechannel.GenerateClientKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("files left next to the key: %v", entries)
	}
	if _, err := securechannel.GenerateClientKey(path); !errors.Is(err, securechannel.ErrKeyExists) {
		t.Fatalf("second GenerateClientKey = %v", err)
	}
	l, err := securechannel.LoadClientKey(path)
	if err != nil || l.Pin != k.Pin {
		t.Fatalf("LoadClientKey: %v, pin %s want %s", err, l.Pin, k.Pin)
	}
	e, created, err := securechannel.EnsureClientKey(path)
	if err != nil || created || e.Pin != k.Pin {
		t.Fatalf("EnsureClientKey of an existing key: %v %v %s", err, created, e.Pin)
	}
	e, created, err = securechannel.EnsureClientKey(filepath.Join(t.TempDir(), "new.key"))
	if err != nil || !created || e.Pin == k.Pin {
		t.Fatalf("EnsureClientKey of a new key: %v %v", err, created)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := securechannel.LoadClientKey(path); err == nil || !strings.Contains(err.Error(), "0640") {
		t.Fatalf("group-readable key: %v", err)
	}
	if _, err := securechannel.LoadClientKey(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("missing file loaded")
	}
}

// TestAttestPinMatchesOpenSSL: the pin of a key is what an operator computes
// with openssl from the key file: sha256 of the DER public key.
func TestAttestPinMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is needed")
		}
		t.Skip("no openssl")
	}
	dir := t.TempDir()
	p256 := filepath.Join(dir, "p256.key")
	if _, err := securechannel.GenerateClientKey(p256); err != nil {
		t.Fatal(err)
	}
	ed := filepath.Join(dir, "ed25519.key")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", ed).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := os.Chmod(ed, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p256, ed} {
		k, err := securechannel.LoadClientKey(path)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", "openssl pkey -in "+path+" -pubout -outform DER | openssl dgst -sha256 -hex").Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		if want := "sha256:" + f[len(f)-1]; k.Pin.String() != want {
			t.Errorf("%s: pin %s, openssl says %s", filepath.Base(path), k.Pin, want)
		}
	}
}

func TestAttestClientKeyRefused(t *testing.T) {
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	for name, data := range map[string][]byte{
		"rsa":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"garbage": []byte("not a key"),
		"sec1":    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}),
		"bad der": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2}}),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := securechannel.LoadClientKey(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAttestSettingsErrors(t *testing.T) {
	w := newWorld(t, 0)
	for _, tc := range []struct {
		name, want string
		mod        func(*securechannel.ClientSettings)
	}{
		{"no key file", "client_key_file", func(s *securechannel.ClientSettings) { s.ClientKeyFile = "" }},
		{"missing key file", "client_key_file", func(s *securechannel.ClientSettings) { s.ClientKeyFile += ".none" }},
		{"token type", "token_type", func(s *securechannel.ClientSettings) { s.TokenType = "SAML" }},
		{"leeway", "leeway", func(s *securechannel.ClientSettings) { s.Leeway = "soon" }},
		{"huge leeway", "leeway", func(s *securechannel.ClientSettings) { s.Leeway = "1h" }},
		{"no digests", "image_digests", func(s *securechannel.ClientSettings) { s.ImageDigests = nil }},
		{"tag for digest", "image digest", func(s *securechannel.ClientSettings) { s.ImageDigests = []string{"latest"} }},
		{"jwks file", "jwks_file", func(s *securechannel.ClientSettings) { s.JWKSFile = w.dir + "/none.json" }},
		{"ca file", "issuer_ca_file", func(s *securechannel.ClientSettings) { s.IssuerCAFile = s.ClientKeyFile }},
		{"pki without root", "root", func(s *securechannel.ClientSettings) { s.TokenType = "PKI" }},
		{"pki root file", "pki_root_file", func(s *securechannel.ClientSettings) { s.TokenType = "PKI"; s.PKIRootFile = w.dir + "/none.pem" }},
		{"http issuer", "issuer", func(s *securechannel.ClientSettings) { s.Issuer = "http://example.com" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := w.settings
			tc.mod(&s)
			if _, err := s.Client(nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Client = %v, want an error about %s", err, tc.want)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for name, s := range map[string]securechannel.ServerSettings{
		"no pins":     {LauncherSocket: w.launcher.Socket},
		"bad pins":    {LauncherSocket: w.launcher.Socket, ClientPins: "sha256:12"},
		"token type":  {LauncherSocket: w.launcher.Socket, ClientPins: w.key.Pin.String(), TokenType: "JWT"},
		"no launcher": {LauncherSocket: w.dir + "/none.sock", ClientPins: w.key.Pin.String()},
	} {
		if _, err := securechannel.OpenServer(ctx, s, nil); err == nil {
			t.Errorf("%s: OpenServer accepted", name)
		} else if name != "no launcher" && name != "token type" && !strings.Contains(err.Error(), attestation.DefaultClientPinsEnv) {
			t.Errorf("%s: %v does not name %s", name, err, attestation.DefaultClientPinsEnv)
		}
	}
	if got := securechannel.ServerSettingsFromEnv(func(k string) string { return "[" + k + "]" }).ClientPins; got != "["+attestation.DefaultClientPinsEnv+"]" {
		t.Fatalf("ServerSettingsFromEnv read %q", got)
	}
}

// TestAttestPKIChannel: the whole channel with PKI tokens, configured by
// files (token_type PKI, pki_root_file).
func TestAttestPKIChannel(t *testing.T) {
	w := newWorld(t, 0)
	root := filepath.Join(w.dir, "root.pem")
	if err := os.WriteFile(root, w.iss.PKIRootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w.settings.TokenType, w.settings.PKIRootFile = "PKI", root
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := securechannel.OpenServer(ctx, securechannel.ServerSettings{LauncherSocket: w.launcher.Socket, TokenType: "PKI", ClientPins: w.key.Pin.String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := serveEnclave(t, srv)
	conn, err := dial(t, w.client(t), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, err := sign(conn, []byte("pki")); err != nil || string(got) != "pki" {
		t.Fatalf("%q, %v", got, err)
	}
	if err := conn.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// An OIDC daemon refuses the PKI enclave.
	w.settings.TokenType, w.settings.PKIRootFile = "", ""
	if _, err := dial(t, w.client(t), e.addr); err == nil || !strings.Contains(err.Error(), "x5c") {
		t.Fatalf("OIDC daemon: %v", err)
	}
}

// TestAttestKeysNotPrinted: formatting the daemon's key or the server's
// configuration never shows a private key.
func TestAttestKeysNotPrinted(t *testing.T) {
	k, err := securechannel.GenerateClientKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	ek, _, err := securechannel.NewEphemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{
		k.Certificate.PrivateKey.(*ecdsa.PrivateKey).D.String(),
		k.Certificate.PrivateKey.(*ecdsa.PrivateKey).D.Text(16),
		ek.D.String(), ek.D.Text(16),
	}
	cfg := securechannel.ServerConfig{Key: ek, ClientPins: []attestation.Pin{k.Pin}}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, k) + fmt.Sprintf(f, cfg) + fmt.Sprintf(f, &k)
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("%s prints a private key: %s", f, out)
			}
		}
		want := "securechannel.ClientKey(" + k.Pin.String() + ")securechannel.ServerConfig{1 client pins}securechannel.ClientKey(" + k.Pin.String() + ")"
		if out != want {
			t.Errorf("%s prints %s, want %s", f, out, want)
		}
	}
}
