package harness

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStartEnclave(t *testing.T) {
	kms := filepath.Join(t.TempDir(), "kms.key")
	picked := StartEnclave(t, EnclaveOptions{KMSKeyFile: kms})
	port := FreePort(t)
	fixed := StartEnclave(t, EnclaveOptions{Port: port, KMSKeyFile: kms, Name: "enclave-on-a-port"})
	if picked.Port == 0 || picked.Listening.IsZero() {
		t.Fatalf("port %d, listening at %v: not read from the enclave's output", picked.Port, picked.Listening)
	}
	if fixed.Port != port {
		t.Fatalf("enclave on port %d reports port %d", port, fixed.Port)
	}
	for _, e := range []*Enclave{picked, fixed} {
		c, err := net.Dial("tcp", e.Addr())
		if err != nil {
			t.Fatalf("enclave ready but not accepting at %s: %v", e.Addr(), err)
		}
		c.Close()
	}
	if _, err := os.Stat(kms); err != nil {
		t.Fatalf("the local KMS key file was not created: %v", err)
	}
	if !strings.Contains(fixed.LogPath(), "enclave-on-a-port") {
		t.Fatalf("log %s is not named after the process", fixed.LogPath())
	}
}

func TestDaemonLines(t *testing.T) {
	for _, c := range []struct {
		line                  string
		what, api, util, keys string
	}{
		{`time=x level=INFO msg="signer listening" address=127.0.0.1:1 utility_address=127.0.0.1:2`, "listening", "127.0.0.1:1", "127.0.0.1:2", ""},
		{`time=x level=INFO msg="signer ready" address=127.0.0.1:1 utility_address=127.0.0.1:2 keys=12`, "ready", "127.0.0.1:1", "127.0.0.1:2", "12"},
	} {
		m := daemonLineRE.FindStringSubmatch(c.line)
		if m == nil || m[1] != c.what || m[2] != c.api || m[3] != c.util || m[4] != c.keys {
			t.Errorf("%s: matched %q", c.line, m)
		}
	}
	if m := daemonLineRE.FindStringSubmatch(`msg="signer stopping" address=127.0.0.1:1`); m != nil {
		t.Errorf("matched another line: %q", m)
	}
}

func TestPostSign(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/keys/ok":
			if string(body) != `"0301ff"` || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "bad request body "+string(body), http.StatusTeapot)
				return
			}
			io.WriteString(w, `{"signature":"edsigX"}`)
		case "/keys/refused":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `[{"id":"x","kind":"permanent","msg":"request kind not allowed"}]`)
		case "/keys/raw":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>"+string(body)+"</html>")
		}
	}))
	defer srv.Close()
	c := srv.Client()

	r := PostSign(c, srv.URL+"/keys/ok", []byte{3, 1, 0xff})
	if r.Err != nil || r.Status != http.StatusOK || r.Signature != "edsigX" || r.Message != "" {
		t.Errorf("ok: %+v", r)
	}
	r = PostSign(c, srv.URL+"/keys/refused", []byte{3})
	if r.Err != nil || r.Status != http.StatusForbidden || r.Signature != "" || r.Message != "request kind not allowed" {
		t.Errorf("refused: %+v", r)
	}
	r = PostSignBody(c, srv.URL+"/keys/raw", "not json")
	if r.Err != nil || r.Status != http.StatusBadGateway || r.Body != "<html>not json</html>" || r.Signature != "" || r.Message != "" {
		t.Errorf("raw: %+v", r)
	}
	srv.Close()
	r = PostSign(c, srv.URL+"/keys/ok", []byte{3})
	var op *net.OpError
	if r.Status != 0 || !errors.As(r.Err, &op) {
		t.Errorf("server gone: %+v, want a transport error", r)
	}
}
