package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/persist"
)

// Damage behind the server's back.
//
// A log file deleted (rm), cut short (truncate) or replaced while the
// server runs would otherwise go unnoticed: the open descriptor still takes
// writes and fdatasyncs succeed, so commits are acknowledged into an inode
// that no name reaches, and the next start recovers a shorter log and
// hands the lost versions out again. So the Log checks its files:
//
//  1. after every fdatasync, fstat of the file just written: a link count
//     of zero or a size below the end of the frames just synced fails the
//     batch (it is never acknowledged);
//  2. every Options.CheckInterval, all open files: fstat as above, plus a
//     stat of the name, which must still reach the same inode.
//
// On the first finding the Log reports persist.ErrDamaged from Damage and
// from every later Append, logs one line naming the file, copies each
// deleted or replaced file (still readable through the open descriptor)
// to <name>.rescued, and writes the marker file DAMAGED saying what
// happened and what to do. Recover refuses a directory holding DAMAGED, so
// a restart cannot silently reuse acknowledged versions; the operator
// restores the rescued files (or accepts the loss) and removes the marker.
//
// Damage done while no server runs: a clean Close records every log
// file's synced size and inode in SIZES (written whole: temp, fsync,
// rename, directory fsync). Those sizes are lower bounds for as long as the
// file exists — the Log only ever grows a file past its synced end, cuts
// back to it, or removes the file — so Recover refuses a file with the same
// inode that is shorter: it was cut while no server ran. (A new file under
// a reused name has, in practice, another inode; a copied directory has new
// inodes, so its record is ignored.) What still cannot be told: a file cut
// after a crash, before any clean Close recorded its size. That looks like
// a write torn by the crash, and recovery says it cannot know which.

const (
	sizesName     = "SIZES"
	damagedName   = "DAMAGED"
	rescuedSuffix = ".rescued"

	// DefaultCheckInterval is how often every open log file is checked.
	// One fstat and one stat per 64 MiB file: negligible.
	DefaultCheckInterval = time.Second
)

// Damage implements persist.DamageReporter.
func (l *Log) Damage() error {
	if p := l.damage.Load(); p != nil {
		return *p
	}
	return nil
}

// checkFile compares f's inode with what the Log knows: linked, at least
// size bytes long and, if byName, still reached by its name. It returns an
// error wrapping persist.ErrDamaged for damage, another error if fstat
// itself failed, and reports whether the content is still readable through
// f's descriptor but no longer through its name (worth rescuing).
func (l *Log) checkFile(f *logFile, size int64, byName bool) (rescue bool, err error) {
	if damageChecksOff {
		return false, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.f.Fd()), &st); err != nil {
		return false, fmt.Errorf("fstat %s: %w", f.name, err)
	}
	if st.Nlink == 0 {
		return true, fmt.Errorf("%w: log file %s was deleted while the server ran (it held segments up to its offset %d)",
			persist.ErrDamaged, l.path(f.name), size)
	}
	if st.Size < size {
		return false, fmt.Errorf("%w: log file %s was cut to %d bytes while the server ran; %d bytes of synced segments are gone",
			persist.ErrDamaged, l.path(f.name), st.Size, size-st.Size)
	}
	if !byName {
		return false, nil
	}
	var named unix.Stat_t
	err = unix.Stat(l.path(f.name), &named)
	switch {
	case errors.Is(err, unix.ENOENT):
		return true, fmt.Errorf("%w: log file %s was renamed or moved away while the server ran", persist.ErrDamaged, l.path(f.name))
	case err != nil:
		return false, fmt.Errorf("stat %s: %w", l.path(f.name), err)
	case named.Ino != st.Ino || named.Dev != st.Dev:
		return true, fmt.Errorf("%w: log file %s was replaced by another file while the server ran", persist.ErrDamaged, l.path(f.name))
	}
	return false, nil
}

// checkLoop runs every interval until Close: see checkAll.
func (l *Log) checkLoop(interval time.Duration) {
	defer close(l.checkerDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.quit:
			return
		}
		if l.Damage() != nil {
			return // reported once; nothing more to find out
		}
		l.checkAll()
	}
}

// checkAll checks every open log file. It holds wmu, so that neither the
// writer (which owns the active file's size) nor Truncate (which removes
// files) runs meanwhile: one fstat and one stat per file.
func (l *Log) checkAll() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	files := append([]*logFile(nil), l.mu.files...)
	closed := l.mu.closed
	l.mu.Unlock()
	if closed {
		return
	}
	for _, f := range files {
		rescue, err := l.checkFile(f, f.size, true)
		if err == nil {
			continue
		}
		if !errors.Is(err, persist.ErrDamaged) {
			l.logger.Warn("disk: cannot check a log file", "file", f.name, "err", err)
			continue
		}
		l.damaged(err, f, rescue)
		return
	}
}

// damaged records the first damage found (later ones are logged only),
// fails the Log, rescues f if asked and writes the DAMAGED marker. It
// returns the recorded error. Called with wmu held (by the writer or
// checkAll), so no batch is written meanwhile.
func (l *Log) damaged(err error, f *logFile, rescue bool) error {
	if !l.damage.CompareAndSwap(nil, &err) {
		l.logger.Error("disk: more damage to the log", "err", err)
		return *l.damage.Load()
	}
	l.mu.Lock()
	if l.mu.failed == nil {
		l.mu.failed = err
	}
	l.mu.Unlock()
	var notes []string
	if rescue {
		if name, rerr := l.rescue(f); rerr != nil {
			notes = append(notes, fmt.Sprintf("rescuing %s failed: %v", f.name, rerr))
		} else {
			notes = append(notes, fmt.Sprintf("its content up to the last synced frame was saved as %s: to restore, move it back to %s", name, f.name))
		}
	}
	if merr := l.writeDamaged(err, notes); merr != nil {
		notes = append(notes, fmt.Sprintf("writing the marker %s failed: %v", damagedName, merr))
	}
	l.logger.Error("disk: the log was damaged behind the server's back; commits are refused and a restart will refuse to start until an operator acts",
		"err", err, "file", f.name, "marker", l.path(damagedName), "notes", strings.Join(notes, "; "))
	return err
}

// rescue copies f's frames, read through its open descriptor, to
// <name>.rescued (synced) and returns that name.
func (l *Log) rescue(f *logFile) (string, error) {
	name := f.name + rescuedSuffix
	data := make([]byte, f.size)
	if _, err := f.f.ReadAt(data, 0); err != nil {
		return "", fmt.Errorf("read %s through its descriptor: %w", f.name, err)
	}
	if err := l.writeFile(name, data); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return name, l.syncer.Sync()
}

// writeDamaged writes the DAMAGED marker (synced, with its directory entry).
func (l *Log) writeDamaged(cause error, notes []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "WeaselDB marked this log directory damaged at %s.\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "What happened: %v\n", cause)
	for _, n := range notes {
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	b.WriteString(`
Acknowledged commits may be missing from the log files, so the server
refuses to start here: starting would hand their versions out again.

What to do: restore the damaged file (from a *.rescued copy beside it, or a
backup), check the log with 'weaseldb log verify --data-dir DIR', then
remove this file. Removing it without restoring accepts the loss.
`)
	if err := l.writeFile(damagedName, []byte(b.String())); err != nil {
		return err
	}
	return l.syncer.Sync()
}

// checkNotDamaged fails Recover when an earlier run marked the directory.
func (l *Log) checkNotDamaged() error {
	data, err := os.ReadFile(l.path(damagedName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", damagedName, err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n\nAcknowledged")
	return fmt.Errorf("%w: %s holds the marker %s; refusing to start on a log that may miss acknowledged commits (read the marker, restore, then remove it): %s",
		persist.ErrDamaged, l.dir, damagedName, strings.ReplaceAll(first, "\n", " "))
}

// recordSyncedSizes writes SIZES for files (the writer has stopped, so
// their sizes are final). Best effort: without it only the check is lost.
func (l *Log) recordSyncedSizes(files []*logFile) {
	var b strings.Builder
	b.WriteString("# name inode synced-bytes: written by a clean Close, checked by Recover (see persist/disk/damage.go)\n")
	for _, f := range files {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.f.Fd()), &st); err != nil || f.size == 0 {
			continue
		}
		if st.Nlink == 0 || st.Size < f.size {
			// Damaged since the last check: not a size to hold the next
			// run to. Said here; the periodic check had no time to.
			l.logger.Error("disk: at close, a log file is deleted or shorter than its synced frames",
				"file", f.name, "synced_bytes", f.size, "bytes", st.Size, "links", st.Nlink)
			continue
		}
		fmt.Fprintf(&b, "%s %d %d\n", f.name, st.Ino, f.size)
	}
	temp := sizesName + tempSuffix
	err := l.writeFile(temp, []byte(b.String()))
	if err == nil {
		err = os.Rename(l.path(temp), l.path(sizesName))
	}
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		l.logger.Warn("disk: could not record the log files' sizes at close", "err", err)
	}
}

// checkSyncedSizes fails Recover when a log file is shorter than a clean
// Close left it (same inode): it was cut while no server ran.
func (l *Log) checkSyncedSizes() error { return checkSizes(l.dir) }

// checkSizes checks the log files of dir against SIZES (Recover and
// Inspect).
func checkSizes(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, sizesName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", sizesName, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		var name string
		var ino uint64
		var size int64
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if n, _ := fmt.Sscanf(line, "%s %d %d", &name, &ino, &size); n != 3 || strings.ContainsAny(name, "/\\") {
			continue // not ours: ignore rather than refuse
		}
		var st unix.Stat_t
		path := filepath.Join(dir, name)
		if err := unix.Stat(path, &st); err != nil || st.Ino != ino || st.Size >= size {
			continue // gone (retention), replaced by a new file, or intact
		}
		return fmt.Errorf("%w: log file %s is %d bytes, but the server that stopped cleanly left %d bytes of synced segments in it: it was cut while no server ran, and acknowledged commits are lost; restore it from a backup, or accept the loss by removing %s",
			persist.ErrDamaged, path, st.Size, size, filepath.Join(dir, sizesName))
	}
	return nil
}
