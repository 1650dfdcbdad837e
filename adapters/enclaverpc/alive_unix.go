//go:build unix

package enclaverpc

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns nc's raw connection for peeking (nil when it has none):
// that of the socket under a TLS connection (NetConn), whose records are
// what a peek sees.
func rawConn(nc net.Conn) syscall.RawConn {
	for {
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = u.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// peek looks at the socket without blocking or consuming anything, in one
// system call (recv with MSG_PEEK|MSG_DONTWAIT). Between requests the
// enclave never sends anything, so only "nothing to read" is healthy:
// end of file is a peer that closed, bytes are a reply nobody asked for
// (a stale or duplicated reply, an unsolicited frame), an error a broken
// socket.
//
// It runs under RawConn.Control, not RawConn.Read: Control ignores the
// connection's read deadline, which the last request left set (a peek
// through Read after that deadline reports a timeout and took every idle
// connection for dead once RPCTimeout had passed), and never parks on the
// poller.
func peek(nc net.Conn) peekResult { return newPeeker(nc).peek() }

// peeker peeks at one connection; made once per connection, it allocates
// nothing per peek.
type peeker struct {
	rc  syscall.RawConn // nil: cannot peek (taken as idle)
	f   func(fd uintptr)
	buf [1]byte
	res peekResult
}

func newPeeker(nc net.Conn) *peeker {
	p := &peeker{rc: rawConn(nc)}
	p.f = p.recv
	return p
}

func (p *peeker) peek() peekResult {
	if p == nil || p.rc == nil {
		return peekIdle
	}
	if err := p.rc.Control(p.f); err != nil {
		return peekError
	}
	return p.res
}

func (p *peeker) recv(fd uintptr) {
	for {
		n, err := recvPeek(fd, p.buf[:])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK):
			p.res = peekIdle
		case err != nil:
			p.res = peekError
		case n == 0:
			p.res = peekClosed
		default:
			p.res = peekUnsolicited
		}
		return
	}
}
