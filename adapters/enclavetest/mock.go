package enclavetest

import (
	"bytes"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclaveserver"
)

// Mock is a mock enclave (adapters/enclaveserver with a local AES-GCM KMS key
// file) on a fixed loopback address, restartable on the same address, for
// the remote backends' runs of the suite.
type Mock struct {
	Addr    string
	KMSFile string
	mode    string
	srv     *enclaveserver.Server
	lying   atomic.Bool
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

// StartMock starts a mock enclave in mode (enclaveserver.ModeConfidentialSpace
// or ModeNitro) on a free loopback port. It is closed at the end of t.
func StartMock(t testing.TB, mode string) *Mock {
	t.Helper()
	m := &Mock{KMSFile: filepath.Join(t.TempDir(), "kms.key"), mode: mode}
	m.start(t, "127.0.0.1:0", m.KMSFile)
	t.Cleanup(func() { m.Stop() })
	return m
}

func (m *Mock) start(t testing.TB, addr, kmsFile string) {
	t.Helper()
	kms, err := enclaveserver.NewLocalKMS(kmsFile)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
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
	m.srv = enclaveserver.NewServer(enclaveserver.Options{KMS: kms, Mode: m.mode, Tamper: m.tamper})
	go func() { _ = m.srv.Serve(ln) }()
}

// Stop closes the enclave (every connection drops, as when it dies).
func (m *Mock) Stop() {
	if m.srv != nil {
		m.srv.Close()
		m.srv = nil
	}
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
