package enclavetest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// Fault is how a Proxy misbehaves on a Sign request.
type Fault int32

// Faults of a hostile enclave (or of something between it and the daemon).
const (
	// Honest forwards the request and its reply.
	Honest Fault = iota
	// Stale answers with the previous Sign reply of the connection and
	// keeps this one for the next request: the connection is one reply
	// behind from then on.
	Stale
	// Duplicate sends the reply twice.
	Duplicate
	// OtherKey has another key of the same connection sign (the request's
	// handle is changed): a valid signature, by the wrong key.
	OtherKey
	// WrongBytes flips a bit of the signature.
	WrongBytes
	// ExtraFrame sends a frame nobody asked for (the connection's previous
	// Sign reply, or a made-up signature) before the real reply.
	ExtraFrame
)

func (f Fault) String() string {
	return [...]string{"honest", "stale reply", "duplicated reply", "reply for another key", "wrong signature bytes", "extra frame mid-request"}[f]
}

// Faults lists the hostile faults.
var Faults = []Fault{Stale, Duplicate, OtherKey, WrongBytes, ExtraFrame}

// Proxy is a frame-level proxy in front of an enclave that misbehaves on
// command: Arm makes it apply a Fault to the next Sign requests, Inject
// sends bytes nobody asked for down every client connection. Everything
// else is forwarded as is, so that Initialize and Import work.
type Proxy struct {
	Addr     string
	upstream string
	ln       net.Listener

	fault   atomic.Int32
	armed   atomic.Int64 // Sign requests still to fault
	applied atomic.Int64 // faults applied

	mu    sync.Mutex
	conns map[*proxyConn]struct{}
	wg    sync.WaitGroup
}

type proxyConn struct {
	down, up net.Conn
	wmu      sync.Mutex // writes down
	last     []byte     // the previous Sign reply on this connection
}

// StartProxy listens on a free loopback port and proxies to upstream. It
// is closed at the end of t.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Arm applies f to the next n Sign requests (on whatever connection).
func (p *Proxy) Arm(f Fault, n int) {
	p.fault.Store(int32(f))
	p.armed.Store(int64(n))
}

// Applied returns how many faults were applied.
func (p *Proxy) Applied() int64 { return p.applied.Load() }

// Inject writes frame down every client connection now.
func (p *Proxy) Inject(frame []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.wmu.Lock()
		_ = enclavewire.WriteFrame(c.down, frame)
		c.wmu.Unlock()
	}
	return len(p.conns)
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.down.Close()
		c.up.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			down.Close()
			continue
		}
		c := &proxyConn{down: down, up: up}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
			down.Close()
			up.Close()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
	}
}

// take reports the fault to apply to this Sign request, if any.
func (p *Proxy) take() Fault {
	for {
		n := p.armed.Load()
		if n <= 0 {
			return Honest
		}
		if p.armed.CompareAndSwap(n, n-1) {
			p.applied.Add(1)
			return Fault(p.fault.Load())
		}
	}
}

func (p *Proxy) serve(c *proxyConn) {
	for {
		req, err := enclavewire.ReadFrame(c.down, 0)
		if err != nil {
			return
		}
		fault := Honest
		r, derr := enclavewire.DecodeRequest(req)
		isSign := derr == nil && r.Sign != nil
		if isSign {
			fault = p.take()
		}
		if fault == OtherKey {
			// The handle of another key of this session: handles are
			// indexes, so 0 ↔ 1 (the test loads at least two keys).
			r.Sign.Handle ^= 1
			if req, err = enclavewire.EncodeRequest(r); err != nil {
				return
			}
		}
		if enclavewire.WriteFrame(c.up, req) != nil {
			return
		}
		reply, err := enclavewire.ReadFrame(c.up, 0)
		if err != nil {
			return
		}
		var out [][]byte
		switch fault {
		case Honest, OtherKey:
			out = [][]byte{reply}
		case Stale:
			if c.last != nil {
				out = [][]byte{c.last}
			} else {
				out = [][]byte{madeUpSignature(reply)}
			}
		case Duplicate:
			out = [][]byte{reply, reply}
		case WrongBytes:
			bad := bytes.Clone(reply)
			bad[len(bad)-1] ^= 0x01
			out = [][]byte{bad}
		case ExtraFrame:
			extra := c.last
			if extra == nil {
				extra = madeUpSignature(reply)
			}
			out = [][]byte{extra, reply}
		}
		if isSign {
			c.last = reply
		}
		c.wmu.Lock()
		for _, f := range out {
			if err = enclavewire.WriteFrame(c.down, f); err != nil {
				break
			}
		}
		c.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// madeUpSignature is reply with its signature bytes replaced by others of
// the same length (a well-formed reply with a signature nobody made).
func madeUpSignature(reply []byte) []byte {
	var tg enclavewire.Tagged
	if err := enclavewire.DecodeReply(reply, &tg); err != nil || len(tg.Bytes) == 0 {
		return reply
	}
	for i := range tg.Bytes {
		tg.Bytes[i] ^= 0x5a
	}
	b, err := enclavewire.EncodeOk(tg)
	if err != nil {
		return reply
	}
	return b
}
