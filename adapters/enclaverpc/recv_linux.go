package enclaverpc

import (
	"syscall"
	"unsafe"
)

// recvPeek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT) as one raw system call (no
// source address is asked for, so nothing is allocated).
func recvPeek(fd uintptr, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
