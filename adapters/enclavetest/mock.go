package enclavetest

import (
	"bytes"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclaveserver"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/kmsdelay"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/adapters/kms/passthroughstandin"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// The platforms a mock enclave accepts the Initialize of (StartMock).
const (
	ModeConfidentialSpace = enclave.PlatformConfidentialSpace
	ModeNitro             = enclave.PlatformNitro
)

// ServerOptions describe an enclave run in the test's process
// (NewServer): the server's options, and the domain's.
type ServerOptions struct {
	// Options are the server's; NewServer sets Options.Enclave.
	enclaveserver.Options
	// KMS seals the sessions' blobs; nil means the passthrough stand-in.
	KMS enclaveside.KMSProvider
	// Platform whose Initialize the sessions accept (default Confidential
	// Space).
	Platform enclave.Platform
	// KMSDelay is slept before every seal and open (load tests).
	KMSDelay time.Duration
	// KMSTimeout bounds each KMS call (default 30 s).
	KMSTimeout time.Duration
	// Tokens: the attested channel's token source (the enclave then
	// refuses ImportUnencrypted on its plain connections).
	Tokens enclaveside.TokenSource
	// Guard, if set, decides which signatures leave the enclave.
	Guard enclave.Guard
}

// NewServer builds an enclave as sigil-enclave does (domain/enclave behind
// adapters/enclaveserver, the key codec of adapters/enclavewire) with the
// test's KMS; it is closed at the end of t (closing it earlier is fine).
func NewServer(t testing.TB, o ServerOptions) *enclaveserver.Server {
	t.Helper()
	srv, err := newServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newServer(o ServerOptions) (*enclaveserver.Server, error) {
	kms := o.KMS
	if kms == nil {
		kms = passthroughstandin.KMS{}
	}
	dom, err := enclave.New(enclave.Config{
		Platform: o.Platform, KMS: kmsdelay.Wrap(kms, o.KMSDelay), Keys: enclavewire.KeyCodec{},
		KMSTimeout: o.KMSTimeout, Tokens: o.Tokens, Guard: o.Guard,
	})
	if err != nil {
		return nil, err
	}
	so := o.Options
	so.Enclave = dom
	return enclaveserver.New(so)
}

// Start runs NewServer on a free loopback port and returns the server and
// its address.
func Start(t testing.TB, o ServerOptions) (*enclaveserver.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(t, o)
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String()
}

// LocalKMS returns the local AES-GCM KMS stand-in keyed by path (created if
// absent), failing t on error.
func LocalKMS(t testing.TB, path string) *localstandin.KMS {
	t.Helper()
	k, err := localstandin.New(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Mock is an in-process enclave (NewServer with a local AES-GCM KMS key
// file) on a fixed loopback address, restartable on the same address, for
// the remote backends' runs of the suite.
type Mock struct {
	Addr    string
	KMSFile string
	mode    enclave.Platform
	srv     *enclaveserver.Server
	lying   atomic.Bool
	guard   enclave.Guard // StartGuardedMock
	// Attested is set by StartAttested: the enclave serves the attested
	// channel, and this is what a daemon needs to reach it.
	Attested *Attested
}

// Lie makes the enclave answer Sign and ProvePossession with a signature
// whose last byte is flipped (on), or honestly again (off).
func (m *Mock) Lie(on bool) { m.lying.Store(on) }

func (m *Mock) tamper(method string, reply []byte) []byte {
	if !m.lying.Load() || (method != "Sign" && method != "ProvePossession") || !bytes.HasPrefix(reply, []byte{0xa1, 0x62, 'O', 'k'}) {
		return reply
	}
	bad := bytes.Clone(reply)
	bad[len(bad)-1] ^= 0x01
	return bad
}

// StartMock starts an in-process enclave accepting the Initialize of mode
// (ModeConfidentialSpace or ModeNitro) on a free loopback port. It is
// closed at the end of t.
func StartMock(t testing.TB, mode enclave.Platform) *Mock {
	t.Helper()
	m := &Mock{KMSFile: filepath.Join(t.TempDir(), "kms.key"), mode: mode}
	m.start(t, "127.0.0.1:0", m.KMSFile)
	t.Cleanup(func() { m.Stop() })
	return m
}

func (m *Mock) start(t testing.TB, addr, kmsFile string) {
	t.Helper()
	kms := LocalKMS(t, kmsFile)
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port of a just-closed server may need a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	m.Addr = ln.Addr().String()
	// Not closed by t: Restart may run in a subtest; StartMock's cleanup
	// stops whichever server runs last.
	opts := ServerOptions{KMS: kms, Platform: m.mode, Options: enclaveserver.Options{Tamper: m.tamper}, Guard: m.guard}
	if m.Attested != nil {
		m.Attested.Channel = m.Attested.open(t)
		opts.Tokens = m.Attested.Channel
	}
	if m.srv, err = newServer(opts); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if m.Attested != nil {
		go func() { _ = m.srv.ServeAttested(ln, m.Attested.Channel) }()
		return
	}
	go func() { _ = m.srv.Serve(ln) }()
}

// Stop closes the enclave (every connection drops, as when it dies).
func (m *Mock) Stop() {
	if m.srv != nil {
		m.srv.Close()
		m.srv = nil
	}
	if m.Attested != nil && m.Attested.Channel != nil {
		m.Attested.Channel.Close()
	}
}

// Stats returns the current enclave server's counters (zero when
// stopped).
func (m *Mock) Stats() enclaveserver.Stats {
	if m.srv == nil {
		return enclaveserver.Stats{}
	}
	return m.srv.Stats()
}

// Restart stops the enclave and starts a new one on the same address,
// sealing with kmsFile ("" keeps the same KMS key, as after a real restart).
func (m *Mock) Restart(t testing.TB, kmsFile string) {
	t.Helper()
	if kmsFile == "" {
		kmsFile = m.KMSFile
	}
	m.Stop()
	m.start(t, m.Addr, kmsFile)
}

// Sessions returns the current enclave server's live connections (none
// when stopped).
func (m *Mock) Sessions() []enclaveserver.SessionInfo {
	if m.srv == nil {
		return nil
	}
	return m.srv.Sessions()
}
