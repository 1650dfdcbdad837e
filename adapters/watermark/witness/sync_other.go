//go:build !linux

package witness

import "os"

// datasync makes f's appended data durable.
func datasync(f *os.File) error { return f.Sync() }
