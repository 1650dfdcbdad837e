package harness

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnclaveOptions describe a mock enclave (cmd/sigil-enclave) to start.
type EnclaveOptions struct {
	// Port is the TCP port on 127.0.0.1; 0 lets the enclave pick one (read
	// back from its "listening on" line).
	Port int
	// KMSKeyFile, if set, selects the local KMS stand-in keyed by that file
	// (--kms local --kms-key-file; created if absent). Enclaves given the
	// same file open each other's sealed blobs.
	KMSKeyFile string
	// Args are further arguments, such as another --kms and its flags.
	Args []string
	// Env is added to the enclave's environment.
	Env []string
	// Name labels the process; default "sigil-enclave".
	Name string
	// Binary is the executable; default cmd/sigil-enclave built with
	// BuildBinary.
	Binary string
}

// Enclave is a running mock enclave.
type Enclave struct {
	*Process
	// Port is its TCP port on 127.0.0.1.
	Port int
	// Listening is when it reported its bound listener.
	Listening time.Time
}

var enclaveListeningRE = regexp.MustCompile(`^listening on 127\.0\.0\.1:(\d+)$`)

// StartEnclave starts a mock enclave and waits until it listens. It is
// stopped at the test's cleanup (see StartProcess).
func StartEnclave(t testing.TB, o EnclaveOptions) *Enclave {
	t.Helper()
	if o.Binary == "" {
		o.Binary = BuildBinary(t, "./cmd/sigil-enclave")
	}
	if o.Name == "" {
		o.Name = "sigil-enclave"
	}
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", o.Port)}
	if o.KMSKeyFile != "" {
		args = append(args, "--kms", "local", "--kms-key-file", o.KMSKeyFile)
	}
	var (
		mu sync.Mutex
		e  = &Enclave{}
	)
	p := StartProcess(t, ProcessOptions{
		Name:   o.Name,
		Binary: o.Binary,
		Args:   append(args, o.Args...),
		Env:    o.Env,
		Ready: func(line string) bool {
			m := enclaveListeningRE.FindStringSubmatch(line)
			if m == nil {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			if e.Listening.IsZero() {
				e.Listening = time.Now()
				e.Port, _ = strconv.Atoi(m[1])
			}
			return true
		},
		Timeout:   60 * time.Second,
		StopGrace: 5 * time.Second,
	})
	mu.Lock()
	defer mu.Unlock()
	e.Process = p
	return e
}

// Addr returns the enclave's address, 127.0.0.1:port.
func (e *Enclave) Addr() string { return "127.0.0.1:" + strconv.Itoa(e.Port) }

// DaemonOptions describe a `sigil serve` to start.
type DaemonOptions struct {
	// Config is the configuration file (-c).
	Config string
	// Args is the whole command line; default serve -c Config.
	Args []string
	// Listening makes StartDaemon return once the listeners are bound
	// ("signer listening"), without waiting for the keys ("signer ready").
	Listening bool
	// Env is added to the daemon's environment.
	Env []string
	// Name labels the process; default "sigil".
	Name string
	// Binary is the executable; default cmd/sigil built with BuildBinary.
	Binary string
}

// Daemon is a running `sigil serve`.
type Daemon struct {
	*Process
	// API and Utility are the base URLs (http://host:port) of the signing
	// API and of the utility listener (/healthz, /metrics).
	API, Utility string
	// Keys is how many keys the "signer ready" line reported; -1 when
	// started with Listening.
	Keys int
}

// The daemon logs "signer listening" once its listeners are bound and
// "signer ready" (same fields, and keys) once every stored key is loaded.
var daemonLineRE = regexp.MustCompile(`msg="signer (listening|ready)" address=(\S+) utility_address=(\S+)(?: keys=(\d+))?`)

// StartDaemon starts `sigil serve` and waits until it is ready (or, with
// Listening, until it listens). It is stopped at the test's cleanup (see
// StartProcess).
func StartDaemon(t testing.TB, o DaemonOptions) *Daemon {
	t.Helper()
	if o.Binary == "" {
		o.Binary = BuildBinary(t, "./cmd/sigil")
	}
	if o.Name == "" {
		o.Name = "sigil"
	}
	if o.Args == nil {
		o.Args = []string{"serve", "-c", o.Config}
	}
	want := "ready"
	if o.Listening {
		want = "listening"
	}
	var (
		mu sync.Mutex
		d  = &Daemon{Keys: -1}
	)
	p := StartProcess(t, ProcessOptions{
		Name:   o.Name,
		Binary: o.Binary,
		Args:   o.Args,
		Env:    o.Env,
		Ready: func(line string) bool {
			m := daemonLineRE.FindStringSubmatch(line)
			if m == nil || m[1] != want {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			d.API, d.Utility = "http://"+m[2], "http://"+m[3]
			if m[4] != "" {
				d.Keys, _ = strconv.Atoi(m[4])
			}
			return true
		},
		Timeout:   60 * time.Second,
		StopGrace: 10 * time.Second,
	})
	mu.Lock()
	defer mu.Unlock()
	d.Process = p
	return d
}

// SignReply is the outcome of one sign request (POST /keys/{pkh}).
type SignReply struct {
	// Status is the HTTP status; 0 when there was no answer.
	Status int
	// Body is the reply's body (up to 8 MiB).
	Body string
	// Signature is the body's "signature" when the body is a JSON object.
	Signature string
	// Message is the "msg" of an error body in Signatory's shape (a JSON
	// array of one {id, kind, msg}); "" otherwise.
	Message string
	// Err is a transport error: no answer, or a body that could not be
	// read.
	Err error
}

// PostSign asks for a signature of msg (sent as a JSON string of hex) at
// url (…/keys/{pkh}, with any query) with c. It never fails a test, so it
// may run in goroutines.
func PostSign(c *http.Client, url string, msg []byte) SignReply {
	return PostSignBody(c, url, strconv.Quote(hex.EncodeToString(msg)))
}

// PostSignBody is PostSign with the request body as given.
func PostSignBody(c *http.Client, url, body string) SignReply {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return SignReply{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	r := SignReply{Status: resp.StatusCode, Body: string(raw), Err: err}
	if err != nil {
		return r
	}
	var ok struct {
		Signature string `json:"signature"`
	}
	var fail []struct {
		Msg string `json:"msg"`
	}
	if json.Unmarshal(raw, &ok) == nil {
		r.Signature = ok.Signature
	} else if json.Unmarshal(raw, &fail) == nil && len(fail) == 1 {
		r.Message = fail[0].Msg
	}
	return r
}
