// Package disk is the local-disk persist.Log: one file per segment in a data
// directory, each fsynced — file and directory — before Append returns.
//
// # Files
//
//	<dir>/LOCK                         flock(2)ed while a Log is open
//	<dir>/<First, 20 digits>.seg       one segment, exactly as encoded
//	<dir>/<...>.seg.<n>.tmp            a segment being written
//	<dir>/retention.json               the retention policies
//
// No path is ever built from client input: segment names come from versions
// and the policy ids are data inside retention.json.
//
// # Append
//
//  1. Write the segment to a fresh temp file and fdatasync it: the data is
//     durable before any name points at it, so a final name never shows a
//     torn segment (short of storage that lies about syncs).
//  2. link(2) the temp file to the final name. link fails with EEXIST if the
//     name exists: that is create-if-not-exists with the full content at
//     once, and EEXIST means another leader wrote that First (ErrFenced).
//     rename(2) would silently replace it; O_EXCL on the final name would
//     expose a partially written file under it.
//  3. Unlink the temp name and fsync the directory, making the link (and the
//     unlink) durable; only then return.
//
// One fsync covers the whole segment (the pipeline batches many transactions
// into it), and directory fsyncs are shared: concurrent Appends that linked
// while another directory fsync was running all ride on the next one (see
// dirSyncer), so N Appends in flight cost N file syncs but fewer directory
// syncs. Stats counts both.
//
// # Recovery
//
// Recover removes stray temp files (writes that never reached step 2),
// reads and validates every segment (magic, length, checksum), and applies
// persist.PlanRecovery: segments after a gap and a torn or corrupt last
// segment are deleted with a log line naming them; a corrupt segment in the
// middle fails with persist.ErrCorruption and deletes nothing.
//
// A LOCK file held with flock(2) keeps two processes from opening the same
// directory by accident (the fencing by link(2) would still keep the log
// consistent, but one of them would be deposed at once). Options.DisableLock
// exists for tests that open two Logs on one directory on purpose.
package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"weaseldb/persist"
	"weaseldb/tx"
)

const (
	lockName      = "LOCK"
	policiesName  = "retention.json"
	segmentSuffix = ".seg"
	tempSuffix    = ".tmp"
)

// Options configure Open. The zero value is the production setting.
type Options struct {
	// DisableLock skips the LOCK file. Only for tests that open a second
	// Log on the same directory on purpose (the fencing tests).
	DisableLock bool
	// Logger receives recovery reports; nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts the work done by a Log since Open.
type Stats struct {
	Appends   uint64 // successful Appends
	FileSyncs uint64 // fdatasync calls on segment files
	DirSyncs  uint64 // fsync calls on the directory
}

// WriteFault is a test hook called before a segment's temp file is written;
// a non-nil error makes the write fail half-way with that error (as a full
// disk would, e.g. syscall.ENOSPC).
type WriteFault func(tempName string) error

// Log is a persist.Log in a directory. See the package doc.
type Log struct {
	dir    string   // immutable
	dirFD  *os.File // immutable; the directory, for fsync
	lock   *os.File // immutable; nil with Options.DisableLock
	logger *slog.Logger
	syncer dirSyncer

	tempSeq    atomic.Uint64
	writeFault atomic.Pointer[WriteFault]
	stats      struct{ appends, fileSyncs, dirSyncs atomic.Uint64 }

	policyMu sync.Mutex // serializes StorePolicies

	mu struct {
		sync.Mutex
		// index is the contiguous run recovered plus the segments appended
		// since, sorted by First; out-of-order Append completion may leave
		// temporary gaps.
		index     []persist.SegmentInfo
		recovered bool
		closed    bool
	}
}

var _ persist.Log = (*Log)(nil)

// Open opens (creating it if needed) the log directory dir. Call Recover
// before anything else.
func Open(dir string, opts Options) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("disk: create log directory: %w", err)
	}
	l := &Log{dir: dir, logger: opts.Logger}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	if !opts.DisableLock {
		lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("disk: open lock file: %w", err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			lock.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("disk: log directory %s is in use by another process or Log (lock file %s is held)", dir, lockName)
			}
			return nil, fmt.Errorf("disk: lock %s: %w", filepath.Join(dir, lockName), err)
		}
		l.lock = lock
	}
	d, err := os.Open(dir)
	if err != nil {
		l.releaseLock()
		return nil, fmt.Errorf("disk: open log directory: %w", err)
	}
	l.dirFD = d
	l.syncer.sync = l.syncDir
	return l, nil
}

func (l *Log) releaseLock() {
	if l.lock != nil {
		l.lock.Close() // closing the descriptor releases the flock
	}
}

// Dir returns the log directory.
func (l *Log) Dir() string { return l.dir }

// Stats returns the counters since Open.
func (l *Log) Stats() Stats {
	return Stats{Appends: l.stats.appends.Load(), FileSyncs: l.stats.fileSyncs.Load(), DirSyncs: l.stats.dirSyncs.Load()}
}

// SetWriteFault installs f (nil removes it) for the following Appends.
func (l *Log) SetWriteFault(f WriteFault) {
	if f == nil {
		l.writeFault.Store(nil)
		return
	}
	l.writeFault.Store(&f)
}

// SegmentFileName returns the file name of the segment starting at first.
func SegmentFileName(first tx.Version) string {
	return string(persist.AppendSegmentName(nil, first)) + segmentSuffix
}

func (l *Log) path(name string) string { return filepath.Join(l.dir, name) }

func (l *Log) syncDir() error {
	l.stats.dirSyncs.Add(1)
	if err := l.dirFD.Sync(); err != nil {
		return fmt.Errorf("disk: fsync directory %s: %w", l.dir, err)
	}
	return nil
}

func (l *Log) checkLocked() error {
	if l.mu.closed {
		return errors.New("disk: log is closed")
	}
	if !l.mu.recovered {
		return errors.New("disk: Recover must be called first")
	}
	return nil
}

func (l *Log) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkLocked()
}

// Recover implements persist.Log; see the package doc.
func (l *Log) Recover(ctx context.Context) (persist.Recovery, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("disk: recover: list %s: %w", l.dir, err)
	}
	var stored []persist.StoredSegment
	removed := false
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tempSuffix) {
			l.logger.Warn("disk: recovery removed an unfinished write", "file", name)
			if err := os.Remove(l.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return persist.Recovery{}, fmt.Errorf("disk: recover: remove %s: %w", name, err)
			}
			removed = true
			continue
		}
		first, ok := persist.ParseSegmentName(strings.TrimSuffix(name, segmentSuffix))
		if !ok || !strings.HasSuffix(name, segmentSuffix) {
			continue // LOCK, retention.json, anything else
		}
		if err := ctx.Err(); err != nil {
			return persist.Recovery{}, fmt.Errorf("disk: recover: %w", err)
		}
		data, err := os.ReadFile(l.path(name))
		if err != nil {
			return persist.Recovery{}, fmt.Errorf("disk: recover: read segment %d: %w", first, err)
		}
		h, herr := persist.DecodeSegmentHeader(data)
		if herr != nil {
			// Name the file: PlanRecovery fails on a damaged segment in the
			// middle, and the operator has to find it.
			herr = fmt.Errorf("segment file %s: %w", l.path(name), herr)
		}
		stored = append(stored, persist.StoredSegment{First: first, Bytes: int64(len(data)), Header: h, Err: herr})
	}
	// os.ReadDir sorts by name, and fixed-width names sort like versions.
	rec, err := persist.PlanRecovery(stored)
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("disk: recover %s: %w", l.dir, err)
	}
	for _, d := range rec.Discarded {
		l.logger.Warn("disk: recovery discarded a segment that was never acknowledged (after a gap, or torn/corrupt at the tail)",
			"first", d.First, "last", d.Last, "bytes", d.Bytes, "file", SegmentFileName(d.First))
		if err := os.Remove(l.path(SegmentFileName(d.First))); err != nil {
			return persist.Recovery{}, fmt.Errorf("disk: recover: remove discarded segment %d: %w", d.First, err)
		}
		removed = true
	}
	if removed {
		if err := l.syncDir(); err != nil {
			return persist.Recovery{}, fmt.Errorf("disk: recover: %w", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return persist.Recovery{}, errors.New("disk: log is closed")
	}
	l.mu.index = slices.Clone(rec.Segments)
	l.mu.recovered = true
	return rec, nil
}

// Append implements persist.Log; see the package doc for the steps.
func (l *Log) Append(ctx context.Context, data []byte) error {
	h, err := persist.DecodeSegmentHeader(data)
	if err != nil {
		return fmt.Errorf("disk: append: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("disk: append segment %d: %w", h.First, err)
	}
	if err := l.check(); err != nil {
		return err
	}
	name := SegmentFileName(h.First)
	temp := name + "." + strconv.FormatUint(l.tempSeq.Add(1), 10) + tempSuffix
	if err := l.writeTemp(temp, data); err != nil {
		os.Remove(l.path(temp)) // best effort; Recover removes leftovers
		return fmt.Errorf("disk: append segment %d: %w", h.First, err)
	}
	linkErr := os.Link(l.path(temp), l.path(name))
	if err := os.Remove(l.path(temp)); err != nil && linkErr == nil {
		l.logger.Warn("disk: could not remove temp file; Recover will", "file", temp, "err", err)
	}
	if linkErr != nil {
		if errors.Is(linkErr, fs.ErrExist) {
			return fmt.Errorf("disk: append segment %d: %w", h.First, persist.ErrFenced)
		}
		return fmt.Errorf("disk: append segment %d: %w", h.First, linkErr)
	}
	if err := l.syncer.Sync(); err != nil {
		return fmt.Errorf("disk: append segment %d: %w", h.First, err)
	}
	l.stats.appends.Add(1)

	info := h.Info()
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.mu.index, info.First, func(s persist.SegmentInfo, first tx.Version) int {
		return cmpVersion(s.First, first)
	})
	l.mu.index = slices.Insert(l.mu.index, i, info)
	return nil
}

func cmpVersion(a, b tx.Version) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writeTemp creates temp exclusively, writes data and fdatasyncs it.
func (l *Log) writeTemp(temp string, data []byte) error {
	f, err := os.OpenFile(l.path(temp), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", temp, err)
	}
	if fault := l.writeFault.Load(); fault != nil {
		if ferr := (*fault)(temp); ferr != nil {
			f.Write(data[:len(data)/2]) // the part that fit
			f.Close()
			return fmt.Errorf("write %s: %w", temp, ferr)
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", temp, err)
	}
	l.stats.fileSyncs.Add(1)
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		f.Close()
		return fmt.Errorf("fdatasync %s: %w", temp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", temp, err)
	}
	return nil
}

// ReadFrom implements persist.Log.
func (l *Log) ReadFrom(ctx context.Context, after tx.Version, maxBytes int) ([][]byte, error) {
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	picked, err := persist.SelectReadFrom(l.mu.index, after, maxBytes)
	picked = slices.Clone(picked)
	l.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	out := make([][]byte, 0, len(picked))
	for _, p := range picked {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("disk: read from %d: %w", after, err)
		}
		data, err := os.ReadFile(l.path(SegmentFileName(p.First)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("disk: read segment %d: %w (truncated meanwhile)", p.First, persist.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("disk: read segment %d: %w", p.First, err)
		}
		out = append(out, data)
	}
	return out, nil
}

// Truncate implements persist.Log.
func (l *Log) Truncate(ctx context.Context, upTo tx.Version) (tx.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("disk: truncate to %d: %w", upTo, err)
	}
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	n := 0
	for n < len(l.mu.index)-1 && l.mu.index[n].Last <= upTo {
		n++
	}
	doomed := slices.Clone(l.mu.index[:n])
	l.mu.index = slices.Delete(l.mu.index, 0, n)
	oldest := persist.Recovery{Segments: l.mu.index}.OldestRetained()
	l.mu.Unlock()

	// Oldest first, so that a crash half-way leaves a contiguous run.
	for _, s := range doomed {
		if err := os.Remove(l.path(SegmentFileName(s.First))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("disk: truncate: remove segment %d: %w", s.First, err)
		}
	}
	if len(doomed) > 0 {
		if err := l.syncer.Sync(); err != nil {
			return 0, fmt.Errorf("disk: truncate: %w", err)
		}
	}
	return oldest, nil
}

// policiesFile is the JSON form of retention.json.
type policiesFile struct {
	Policies map[string]tx.Version `json:"policies"`
}

// LoadPolicies implements persist.Log.
func (l *Log) LoadPolicies(ctx context.Context) (map[string]tx.Version, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(l.path(policiesName))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]tx.Version{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("disk: load policies: %w", err)
	}
	var pf policiesFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return nil, fmt.Errorf("disk: load policies from %s: %w: %v", policiesName, persist.ErrCorruption, err)
	}
	if pf.Policies == nil {
		pf.Policies = map[string]tx.Version{}
	}
	return pf.Policies, nil
}

// StorePolicies implements persist.Log: write a temp file, fsync it, rename
// it over retention.json, fsync the directory.
func (l *Log) StorePolicies(ctx context.Context, policies map[string]tx.Version) error {
	if err := l.check(); err != nil {
		return err
	}
	data, err := json.Marshal(policiesFile{Policies: policies})
	if err != nil {
		return fmt.Errorf("disk: store policies: %w", err)
	}
	l.policyMu.Lock()
	defer l.policyMu.Unlock()
	temp := policiesName + tempSuffix
	if err := l.writeFile(temp, data); err != nil {
		os.Remove(l.path(temp))
		return fmt.Errorf("disk: store policies: %w", err)
	}
	if err := os.Rename(l.path(temp), l.path(policiesName)); err != nil {
		return fmt.Errorf("disk: store policies: %w", err)
	}
	if err := l.syncer.Sync(); err != nil {
		return fmt.Errorf("disk: store policies: %w", err)
	}
	return nil
}

func (l *Log) writeFile(name string, data []byte) error {
	f, err := os.OpenFile(l.path(name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Close implements persist.Log: it releases the directory and the lock.
// Appends still running may fail. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return nil
	}
	l.mu.closed = true
	err := l.dirFD.Close()
	l.releaseLock()
	if err != nil {
		return fmt.Errorf("disk: close: %w", err)
	}
	return nil
}
