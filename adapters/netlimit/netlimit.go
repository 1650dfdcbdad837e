// Package netlimit bounds what one client address can hold of a listener:
// a connection beyond the address's cap is accepted and closed at once, so
// that it occupies neither a slot of the listener's overall limit nor the
// accept queue. One host trickling header bytes over a thousand connections
// (each kept until the header read timeout) therefore cannot fill the
// listener and delay everyone else's requests by seconds — a consensus
// round. Refusals are logged aggregated: the first per address at once,
// then one line per address and window with the count.
package netlimit

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Window is the period over which refusals of one address are counted
// into one log line.
const Window = 10 * time.Second

// maxTracked bounds the addresses whose refusals are counted separately;
// beyond it they are counted together.
const maxTracked = 1024

// Listener is a net.Listener that allows at most PerClient open
// connections per remote IP address.
type Listener struct {
	net.Listener
	perClient int
	log       *slog.Logger
	field     string // the configuration field, for messages

	mu    sync.Mutex
	open  map[string]int
	quiet map[string]*refusals // addresses refused in the current window
}

type refusals struct{ n int }

// Wrap returns ln with at most perClient connections per client address.
// field names the listener in log lines (e.g. "server.address").
func Wrap(ln net.Listener, perClient int, field string, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, perClient: perClient, log: log, field: field, open: map[string]int{}, quiet: map[string]*refusals{}}
}

// Accept returns the next connection whose address is under its cap;
// connections over it are closed here.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		l.mu.Lock()
		if l.open[ip] >= l.perClient {
			l.mu.Unlock()
			_ = c.Close()
			l.refused(ip)
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

// Open returns how many connections ip holds (tests).
func (l *Listener) Open(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[ip]
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] <= 1 {
		delete(l.open, ip)
		return
	}
	l.open[ip]--
}

// refused logs a refusal: the first of a window at once, the others as
// one line with their count when the window ends.
func (l *Listener) refused(ip string) {
	l.mu.Lock()
	key := ip
	if _, ok := l.quiet[key]; !ok && len(l.quiet) >= maxTracked {
		key = "(other addresses)"
	}
	r, ok := l.quiet[key]
	if ok {
		r.n++
		l.mu.Unlock()
		return
	}
	l.quiet[key] = &refusals{}
	l.mu.Unlock()
	l.log.Warn("connection refused: the client address holds its maximum of open connections (server.max_connections_per_client)",
		"listener", l.field, "client", key, "max", l.perClient)
	time.AfterFunc(Window, func() {
		l.mu.Lock()
		r := l.quiet[key]
		delete(l.quiet, key)
		l.mu.Unlock()
		if r != nil && r.n > 0 {
			l.log.Warn("connections refused, repeated", "listener", l.field, "client", key, "max", l.perClient, "refused", r.n, "window", Window)
		}
	})
}

// conn releases its address's slot once, when closed.
type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

func addrOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
