//go:build !unix

package witness

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens dir/.lock; without flock the record is not protected
// against a second process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("watermark witness: %w", err)
	}
	return f, nil
}
