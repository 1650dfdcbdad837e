package nitro

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// proxy forwards every connection accepted on a listener (the host's vsock
// port proxy_local_port, where the enclave connects to reach AWS KMS) to a
// TCP address (proxy_remote_address), copying bytes both ways. It holds no
// secret: the enclave's TLS session passes through it.
type proxy struct {
	ln     net.Listener
	remote string
	log    *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startProxy(ln net.Listener, remote string, log *slog.Logger) *proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &proxy{ln: ln, remote: remote, log: log, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Error("KMS proxy stopped accepting", "err", err.Error())
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) forward(in net.Conn) {
	defer p.wg.Done()
	defer p.untrack(in)
	out, err := net.DialTimeout("tcp", p.remote, 10*time.Second)
	if err != nil {
		p.log.Warn("KMS proxy cannot reach its remote address", "remote", p.remote, "err", err.Error())
		return
	}
	if !p.track(out) {
		out.Close()
		return
	}
	defer p.untrack(out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}

// Close stops accepting, closes every forwarded connection and waits.
func (p *proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}
