// Package atomicfile replaces files so that a crash leaves either the old or
// the new content, never a partial file: the data goes to a temporary file in
// the same directory, which is fsynced, renamed over the target, and the
// directory is fsynced. Sigil's key file, watermark files and exports use it.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path with data, created with mode perm. A symbolic link at
// path is followed, so its target is replaced rather than the link.
// beforeRename, if non-nil (tests), runs once the temporary file is complete
// and before it replaces path; an error from it aborts the write. On any
// failure path is untouched and the temporary file is removed.
func Write(path string, data []byte, perm os.FileMode, beforeRename func(tmp string) error) (err error) {
	if target, e := filepath.EvalSymlinks(path); e == nil {
		path = target
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if beforeRename != nil {
		if err = beforeRename(tmp); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making a rename in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) { // some filesystems cannot
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
