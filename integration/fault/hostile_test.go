package fault

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// mode is how the hostile enclave answers Sign requests.
type mode int32

const (
	honest    mode = iota
	oversized      // a 2 GiB length prefix, then 64 MiB of junk
	garbage        // a well-framed reply that is not CBOR
	wrongType      // an Ok signature of another key type
	stall          // no reply at all
)

func (m mode) String() string {
	return [...]string{"honest", "oversized length prefix", "garbage CBOR", "wrong key type", "stall"}[m]
}

// hostile is an enclave written for this test: a frame-level proxy in front
// of a real in-process mock enclave (so Initialize and Import work and the
// daemon starts), which answers Sign requests according to its mode.
type hostile struct {
	ln       net.Listener
	upstream string
	mode     atomic.Int32
	signs    atomic.Int64 // Sign requests answered with hostility
	junkSent atomic.Int64 // junk bytes the daemon accepted after an oversized prefix
	wg       sync.WaitGroup
}

func startHostile(t *testing.T, upstream string) *hostile {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{ln: ln, upstream: upstream}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.serve(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *hostile) port() int { return h.ln.Addr().(*net.TCPAddr).Port }

func (h *hostile) serve(down net.Conn) {
	defer down.Close()
	up, err := net.Dial("tcp", h.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	for {
		frame, err := enclavewire.ReadFrame(down, enclavewire.DefaultMaxFrame)
		if err != nil {
			return
		}
		req, err := enclavewire.DecodeRequest(frame)
		if err == nil && req.Sign != nil {
			if m := mode(h.mode.Load()); m != honest {
				h.signs.Add(1)
				if !h.attack(down, m) {
					return
				}
				continue
			}
		}
		if err := enclavewire.WriteFrame(up, frame); err != nil {
			return
		}
		reply, err := enclavewire.ReadFrame(up, enclavewire.DefaultMaxFrame)
		if err != nil {
			return
		}
		if err := enclavewire.WriteFrame(down, reply); err != nil {
			return
		}
	}
}

// attack answers one Sign request; false ends the connection.
func (h *hostile) attack(down net.Conn, m mode) bool {
	switch m {
	case oversized:
		// A daemon that allocated and read the announced length would hold
		// every junk byte it accepted; one that refuses the prefix closes.
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 1<<31)
		if _, err := down.Write(hdr[:]); err != nil {
			return false
		}
		junk := make([]byte, 1<<20)
		_ = down.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for range 64 {
			n, err := down.Write(junk)
			h.junkSent.Add(int64(n))
			if err != nil {
				return false
			}
		}
		return true
	case garbage:
		b := make([]byte, 200)
		_, _ = rand.Read(b)
		b[0] = 0xff // a CBOR "break" where an item must start
		return enclavewire.WriteFrame(down, b) == nil
	case wrongType:
		sig := make([]byte, 64)
		_, _ = rand.Read(sig)
		reply, err := enclavewire.EncodeOk(enclavewire.Tagged{Type: enclavewire.KeySecp256k1, Bytes: sig})
		if err != nil {
			panic(err)
		}
		return enclavewire.WriteFrame(down, reply) == nil
	case stall:
		// Never answer: wait for the daemon to give up and close.
		_, _ = io.Copy(io.Discard, down)
		return false
	}
	return false
}

// TestHostileEnclave points the daemon at an enclave that answers Sign
// requests with an oversized length prefix, garbage, a signature of the
// wrong key type, or nothing. The daemon must answer each request with a
// 5xx carrying a message, keep its memory bounded, keep answering /healthz,
// and sign correctly again once the enclave behaves.
func TestHostileEnclave(t *testing.T) {
	sigilBin := harness.BuildBinary(t, "./cmd/sigil")
	dir := t.TempDir()
	kmsPath := filepath.Join(dir, "enclave-kms.key")
	keysPath := filepath.Join(dir, "keys.json")
	keys := writeKeys(t, kmsPath, keysPath, tezos.Ed25519)
	k := keys[0]

	kms, err := localstandin.New(kmsPath)
	if err != nil {
		t.Fatal(err)
	}
	upstream := enclavetest.NewServer(t, enclavetest.ServerOptions{KMS: kms})
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = upstream.Serve(rln) }()
	t.Cleanup(func() { upstream.Close() })
	h := startHostile(t, rln.Addr().String())

	d := startDaemon(t, sigilBin, writeConfig(t, dir, h.port(), keysPath, "500ms", keys))
	hc := newHTTPClient()
	pid := d.proc.Pid()

	signsOK := func(within time.Duration) error {
		deadline := time.Now().Add(within)
		var last signResult
		for time.Now().Before(deadline) {
			last = sign(hc, d.api, k.pkh, transaction)
			if last.err == nil && last.status == http.StatusOK {
				return verify(k.pk, transaction, last.sig)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("no signature within %v; last: %d %q %v", within, last.status, last.msg, last.err)
	}
	if err := signsOK(5 * time.Second); err != nil {
		t.Fatalf("honest enclave: %v", err)
	}
	rssBefore := vmRSS(t, pid)

	for _, tc := range []struct {
		m        mode
		requests int
	}{
		{oversized, 40},
		{garbage, 40},
		{wrongType, 40},
		{stall, 8},
	} {
		h.mode.Store(int32(tc.m))
		before := h.signs.Load()
		var wg sync.WaitGroup
		results := make([]signResult, tc.requests)
		durs := make([]time.Duration, tc.requests)
		for i := range tc.requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				results[i] = sign(hc, d.api, k.pkh, transaction)
				durs[i] = time.Since(start)
			}()
			if i%4 == 3 {
				wg.Wait() // four at a time
			}
		}
		wg.Wait()
		msgs := map[string]int{}
		var slowest time.Duration
		for i, r := range results {
			slowest = max(slowest, durs[i])
			switch {
			case r.err != nil:
				t.Errorf("%s: transport error: %v", tc.m, r.err)
			case r.status < 500 || r.status > 599 || r.msg == "":
				t.Errorf("%s: got %d %q (signature %q), want a 5xx with a message", tc.m, r.status, r.msg, r.sig)
			default:
				msgs[fmt.Sprintf("%d %s", r.status, r.msg)]++
			}
		}
		if h.signs.Load() == before {
			t.Errorf("%s: the hostile enclave saw no Sign request", tc.m)
		}
		st, body, err := getStatus(hc, d.utility+"/healthz")
		if err != nil {
			t.Errorf("%s: /healthz does not answer: %v", tc.m, err)
		}
		t.Logf("%s: %d requests, slowest %v, %d hostile replies; /healthz %d %q; errors: %v",
			tc.m, tc.requests, slowest.Round(time.Millisecond), h.signs.Load()-before, st, body, msgs)
		if d.proc.Exited() {
			t.Fatalf("%s: the daemon exited", tc.m)
		}

		h.mode.Store(int32(honest))
		if err := signsOK(5 * time.Second); err != nil {
			t.Errorf("after %s, the honest enclave again: %v", tc.m, err)
		}
	}

	// Hammer the oversized prefix: memory must not follow the announced
	// lengths (2 GiB each) nor the junk streamed after them.
	// The pool redials (Initialize and Import pass through honestly) and
	// each new connection meets another oversized reply.
	h.mode.Store(int32(oversized))
	hammerFrom, hammerEnd := h.signs.Load(), time.Now().Add(30*time.Second)
	for h.signs.Load()-hammerFrom < 100 && time.Now().Before(hammerEnd) {
		r := sign(hc, d.api, k.pkh, transaction)
		if r.err != nil || r.status < 500 {
			t.Errorf("oversized, hammering: %d %q %v", r.status, r.msg, r.err)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.signs.Load() - hammerFrom; n < 100 {
		t.Errorf("hammering: only %d oversized replies reached the daemon in 30 s", n)
	}
	h.mode.Store(int32(honest))
	if err := signsOK(5 * time.Second); err != nil {
		t.Errorf("after hammering: %v", err)
	}
	rssAfter := vmRSS(t, pid)
	t.Logf("daemon VmRSS %d KiB before the hostile replies, %d KiB after %d oversized replies (2 GiB announced each; %d MiB of junk accepted by the socket)",
		rssBefore, rssAfter, h.signs.Load()-hammerFrom, h.junkSent.Load()>>20)
	if growth := rssAfter - rssBefore; growth > 32<<10 {
		t.Errorf("daemon RSS grew by %d KiB (from %d to %d KiB): replies are not bounded", growth, rssBefore, rssAfter)
	}
	if st, body, err := getStatus(hc, d.utility+"/healthz"); err != nil || st != http.StatusOK {
		t.Errorf("/healthz at the end: %d %s %v", st, body, err)
	}
	if d.proc.Exited() {
		t.Fatal("the daemon exited")
	}
}
