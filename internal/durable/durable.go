// Package durable has the file-system steps whose durability is easy to get
// wrong: a directory created with os.MkdirAll is not on disk until its
// parent directory is fsynced, so after a power cut it — and every file
// written into it, fsynced or not — can be gone.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// MkdirAll is os.MkdirAll that also makes each directory it creates durable:
// it fsyncs the parent after each mkdir. A directory that already exists is
// left alone (its creator made it durable, or an operator did).
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	if info, err := os.Stat(dir); err == nil {
		if !info.IsDir() {
			return fmt.Errorf("mkdir %s: %w", dir, fs.ErrExist)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // made meanwhile by someone else, who syncs it
		}
		return err
	}
	return SyncDir(parent)
}

// SyncDir fsyncs a directory, making the creations, renames and removals
// of entries in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
