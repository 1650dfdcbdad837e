//go:build unix

package enclaverpc

import (
	"errors"
	"net"
	"syscall"
)

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
func peek(nc net.Conn) peekResult {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return peekIdle
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekError
	}
	res := peekError
	var buf [1]byte
	if err := rc.Control(func(fd uintptr) {
		for {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK):
				res = peekIdle
			case err != nil:
				res = peekError
			case n == 0:
				res = peekClosed
			default:
				res = peekUnsolicited
			}
			return
		}
	}); err != nil {
		return peekError
	}
	return res
}
