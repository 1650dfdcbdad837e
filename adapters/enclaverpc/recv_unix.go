//go:build unix && !linux

package enclaverpc

import "syscall"

// recvPeek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT).
func recvPeek(fd uintptr, b []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
