// Package dirlock is the exclusive lock on a data directory: a lock file
// held with flock(2) for as long as the owner runs, holding the owner's
// pid so that a refused second owner can say who holds it. The kernel
// releases the lock when the holder exits, however it exits, so a crash
// leaves no stale lock (the pid left in the file is only informative).
//
// flock locks belong to an open file description: a second Acquire of the
// same file fails even within one process.
package dirlock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped by Acquire's error when another owner holds the lock.
var ErrLocked = errors.New("held by another process")

// Lock is a held lock file. Close releases it.
type Lock struct {
	f *os.File
}

// Acquire creates (if needed) and locks the file at path without waiting.
// When another owner holds it, the error wraps ErrLocked and names the
// holder's pid.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock file %s is %w (pid %s)", path, ErrLocked, holder(f))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Record the holder. Failing to is not fatal: the lock is what fences.
	if err := f.Truncate(0); err == nil {
		f.WriteAt(strconv.AppendInt(nil, int64(os.Getpid()), 10), 0)
	}
	return &Lock{f: f}, nil
}

// holder reads the pid recorded in a held lock file.
func holder(f *os.File) string {
	var buf [32]byte
	n, _ := f.ReadAt(buf[:], 0)
	pid := bytes.TrimSpace(buf[:n])
	if _, err := strconv.Atoi(string(pid)); err != nil || len(pid) == 0 {
		return "unknown"
	}
	return string(pid)
}

// Close releases the lock.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
