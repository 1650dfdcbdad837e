//go:build unix

package enclaveserver

import "syscall"

// openFileLimit is the process's soft limit on open files (the Go runtime
// raises it to the hard limit at start).
func openFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return DefaultMaxConnsCap + reservedFiles
	}
	return int(r.Cur)
}
