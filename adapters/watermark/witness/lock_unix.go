//go:build unix

package witness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive advisory lock on dir/.lock: two processes
// appending to one record would each trust their own marks. The kernel
// releases it when the process dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("watermark witness: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("watermark witness: %s is in use by another process (a sigil daemon with this base directory)", dir)
		}
		return nil, fmt.Errorf("watermark witness: locking %s: %w", path, err)
	}
	return f, nil
}
