//go:build unix

package enclaverpc

import (
	"errors"
	"net"
	"syscall"
)

// connAlive peeks at the socket without blocking or consuming anything: an
// idle enclave connection has nothing to read, so end of file, an error or
// unexpected bytes all mean it can no longer be used. One system call.
func connAlive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var buf [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Only "nothing to read" means open and idle; end of file, an
		// error or bytes nobody asked for all mean unusable.
		alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
		return true // never wait
	}); err != nil {
		return false
	}
	return alive
}
