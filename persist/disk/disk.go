// Package disk is the local-disk persist.Log: segments appended as frames to
// log files in a data directory, written by one goroutine that covers every
// queued Append with one write and one fdatasync (group commit).
//
// # Files
//
//	<dir>/LOCK                       flock(2)ed while a Log is open: the fence
//	<dir>/<seq, 20 digits>.log       segments, each exactly as encoded, back to back
//	<dir>/retention.json             the retention policies
//	<dir>/retention.json.tmp         policies being replaced
//	<dir>/DAMAGED                    a log file was deleted or cut under a running Log: Recover refuses (damage.go)
//	<dir>/<seq>.log.rescued          the synced content of a log file deleted under a running Log
//	<dir>/SIZES                      the log files' synced sizes at the last clean Close (damage.go)
//
// A log file is named by a sequence number that grows with every file this
// directory ever had, so names sort in write order (a version would not: a
// segment still in flight may land in a newer file than a later version).
// SegmentLocation tells where a segment is. No path is ever built from
// client input: file names come from the sequence and the policy ids are data
// inside retention.json.
//
// # Frames
//
// A frame is one encoded segment, byte for byte (see persist's segment
// format): its header carries its length and an xxhash64 of everything after
// the checksum, so a frame validates itself and needs no framing of its own.
// A frame whose magic is "WDED" instead of "WSEG" is a tombstone: a segment
// that recovery discarded (it followed a gap, so it was never acknowledged)
// but that could not be cut off because acknowledged frames follow it in the
// file. The checksum does not cover the magic, so a tombstone still
// validates, and a later leader may write a segment of the same First.
//
// # Append (group commit)
//
//  1. Append validates the segment, checks the fence (its First must be
//     neither stored nor in flight: ErrFenced), queues it and wakes the
//     writer.
//  2. The writer takes every queued segment, rolls to a new file if the
//     batch would push the current one past Options.MaxFileBytes (creating
//     it, preallocating space, and fsyncing the directory so that its name
//     is durable), writes the whole batch with one pwritev at the end of the
//     file, and issues one fdatasync. While that sync runs, the next batch
//     gathers in the queue.
//  3. Only after the fdatasync covering its bytes returned does Append
//     return nil. The directory is fsynced only when a file is created or
//     removed, never per Append.
//
// A failed write (a full disk: ENOSPC) cuts the file back to its last whole
// frame and fails the batch; the next batch tries again, so the log resumes
// by itself when space returns. A failed fdatasync is sticky (the kernel may
// have dropped the dirty pages, so nothing written since the last good sync
// can be trusted): every later Append fails until the process reopens the
// log and recovery decides from what is really on disk.
//
// Rejected: one file per segment (temp file + fdatasync + link(2) + unlink +
// directory fsync per segment, ~260 segments/s on this disk, 38 % of the
// server's CPU in openat). Not done: writing into zero-filled extents so
// that fdatasync need not update the file size. fallocate(KEEP_SIZE) at file
// creation (which spares block allocation but not the size update) measured
// between no gain and ~15 % here (bench/results/persist.md), which bounds
// what the rest could bring; it would cost a recovery that tells zeros from
// a torn frame.
//
// # Fencing
//
// The LOCK file is the fence: while a Log holds it no other process can open
// the directory (Open fails naming the lock). Within the process, an Append
// of a First that is stored or in flight fails with ErrFenced, which keeps
// the persist.Log contract for a pipeline that raced itself.
//
// # Recovery
//
// Recover reads the log files in name order and scans their frames. A frame
// that does not validate is a torn tail when it is in the last file and no
// valid frame follows it anywhere: the file is truncated to the last good
// frame, with a log line saying what was discarded. Anywhere else it fails
// with persist.ErrCorruption naming the file and the offset, and changes
// nothing. The live frames, sorted by First, go through
// persist.PlanRecovery; segments after a gap are tombstoned (or, if nothing
// live remains in their file, the file is removed). Files without a live
// frame are removed. New Appends go to a new file.
//
// # Retention
//
// Truncate removes whole files, oldest first, whose segments all end at or
// below the version asked, never the file being written nor the one holding
// the newest segment, and only while the removed segments are exactly the
// oldest ones (so the retained run stays contiguous). Retention is therefore
// file-granular: up to Options.MaxFileBytes more than asked may be kept, and
// OldestRetained says exactly what is. One exception keeps a quiet log from
// holding everything in its only file: when the file being written holds
// segments to delete and what must stay of it is small (<= 1 MiB: typically
// the newest segment or few), Truncate rolls to a new file, copies those
// segments into it (synced), and removes the old file. A crash between the
// copy and the removal leaves two identical frames of one First; recovery
// keeps the newer.
package disk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaseldb/weaseldb/internal/dirlock"
	"github.com/weaseldb/weaseldb/internal/durable"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

const (
	lockName     = "LOCK"
	policiesName = "retention.json"
	logSuffix    = ".log"
	tempSuffix   = ".tmp"

	// DefaultMaxFileBytes is the size at which a log file is rolled: large
	// enough that file creation (and its directory fsync) is rare, small
	// enough that retention is not too coarse.
	DefaultMaxFileBytes = 64 << 20
)

// Options configure Open. The zero value is the production setting.
type Options struct {
	// MaxFileBytes rolls to a new log file before a batch would grow the
	// current one beyond it (a batch is never split, so a file may exceed
	// it by one batch). Zero means DefaultMaxFileBytes. Tests set it tiny to
	// get one file per batch.
	MaxFileBytes int64
	// Logger receives recovery reports; nil means slog.Default().
	Logger *slog.Logger
	// CheckInterval is how often every open log file is checked for
	// damage behind the server's back (see damage.go). Zero means
	// DefaultCheckInterval; negative turns the periodic check off (the
	// check after every fdatasync stays).
	CheckInterval time.Duration
}

// Stats counts the work done by a Log since Open.
type Stats struct {
	Appends      uint64 // successful Appends
	GroupCommits uint64 // batches written and synced (each covers >= 1 Append)
	FileSyncs    uint64 // fdatasync/fsync calls on log files
	DirSyncs     uint64 // fsync calls on the directory
	FilesCreated uint64 // log files created (rolls)
}

// WriteFault is a test hook called before a batch is written to the log file
// name; a non-nil error makes the write fail half-way with that error (as a
// full disk would, e.g. syscall.ENOSPC).
type WriteFault func(name string) error

// logFile is one open log file.
type logFile struct {
	seq  uint64   // immutable
	name string   // immutable; base name
	f    *os.File // immutable; closed when the file is removed or the Log closed

	// size is the end of the last whole frame. Owned by the writer for the
	// active file; immutable for the others after recovery.
	size int64

	// Guarded by Log.mu:
	segments int        // live segments in the index
	maxLast  tx.Version // largest Last of those
}

// location is where one indexed segment's frame is.
type location struct {
	file *logFile
	off  int64
}

// appendReq is one queued Append; pooled.
type appendReq struct {
	data []byte
	info persist.SegmentInfo
	done chan error // buffered 1
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// Log is a persist.Log in a directory. See the package doc.
type Log struct {
	dir          string        // immutable
	dirFD        *os.File      // immutable; the directory, for fsync
	lock         *dirlock.Lock // immutable; the held LOCK file
	logger       *slog.Logger
	maxFileBytes int64 // immutable
	syncer       dirSyncer
	checkEvery   time.Duration // immutable; <= 0: no periodic check

	// damage is the first damage found behind the server's back (see
	// damage.go); nil while none was.
	damage atomic.Pointer[error]

	writeFault atomic.Pointer[WriteFault]
	stats      struct {
		appends, groupCommits, fileSyncs, dirSyncs, filesCreated atomic.Uint64
	}

	policyMu sync.Mutex // serializes StorePolicies
	// wmu is held by the writer while it writes a batch, and by Truncate
	// while it may roll the active file; it guards active's contents.
	wmu sync.Mutex

	wake        chan struct{} // buffered 1; an Append was queued
	quit        chan struct{} // closed by Close
	writerDone  chan struct{} // closed when the writer has exited
	checkerDone chan struct{} // closed when the periodic checker has exited

	// Owned by the writer goroutine (and by Recover before it starts):
	active  *logFile // the file being appended to; nil until the first batch; written under mu
	nextSeq uint64
	iovs    [][]byte
	batch   []*appendReq

	mu struct {
		sync.Mutex
		// infos is the contiguous run recovered plus the segments appended
		// since, sorted by First (out-of-order completion may leave
		// temporary gaps); locs[i] is where infos[i] is stored.
		infos []persist.SegmentInfo
		locs  []location
		files []*logFile // every open log file, oldest first
		// pending holds the Firsts queued or being written, for the fence.
		pending []tx.Version
		queue   []*appendReq
		failed  error // sticky: a failed fdatasync
		writing bool  // the writer goroutine runs
		claimed bool  // an Append succeeded since Recover
		recovered,
		closed bool
	}
}

var (
	_ persist.Log            = (*Log)(nil)
	_ persist.DamageReporter = (*Log)(nil)
)

// Open opens (creating it if needed) the log directory dir and takes its
// lock. Call Recover before anything else.
func Open(dir string, opts Options) (*Log, error) {
	// Durably: a log directory lost to a power cut takes every log file.
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("disk: create log directory: %w", err)
	}
	l := &Log{dir: dir, logger: opts.Logger, maxFileBytes: opts.MaxFileBytes, checkEvery: opts.CheckInterval}
	if l.checkEvery == 0 {
		l.checkEvery = DefaultCheckInterval
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	if l.maxFileBytes <= 0 {
		l.maxFileBytes = plantedMaxFileBytes(DefaultMaxFileBytes)
	}
	lock, err := acquireLock(filepath.Join(dir, lockName))
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, fmt.Errorf("disk: log directory %s is in use by %s: %w", dir, LockHolder(dir), err)
	}
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	l.lock = lock
	d, err := os.Open(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("disk: open log directory: %w", err)
	}
	l.dirFD = d
	l.syncer.sync = l.syncDir
	l.wake = make(chan struct{}, 1)
	l.quit = make(chan struct{})
	l.writerDone = make(chan struct{})
	l.checkerDone = make(chan struct{})
	return l, nil
}

// Dir returns the log directory.
func (l *Log) Dir() string { return l.dir }

// Stats returns the counters since Open.
func (l *Log) Stats() Stats {
	return Stats{
		Appends:      l.stats.appends.Load(),
		GroupCommits: l.stats.groupCommits.Load(),
		FileSyncs:    l.stats.fileSyncs.Load(),
		DirSyncs:     l.stats.dirSyncs.Load(),
		FilesCreated: l.stats.filesCreated.Load(),
	}
}

// SetWriteFault installs (or, with nil, removes) a write fault hook.
func (l *Log) SetWriteFault(f WriteFault) {
	if f == nil {
		l.writeFault.Store(nil)
		return
	}
	l.writeFault.Store(&f)
}

// SegmentLocation returns where the stored segment starting at first is:
// the log file's path, the frame's offset in it and its length. ok is false
// if no such segment is stored (or Recover has not run).
func (l *Log) SegmentLocation(first tx.Version) (path string, offset, length int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, found := l.searchLocked(first)
	if !found {
		return "", 0, 0, false
	}
	return l.path(l.mu.locs[i].file.name), l.mu.locs[i].off, l.mu.infos[i].Bytes, true
}

// LogFileName returns the name of the log file with sequence number seq.
func LogFileName(seq uint64) string {
	return string(persist.AppendSegmentName(nil, tx.Version(seq))) + logSuffix
}

func (l *Log) path(name string) string { return filepath.Join(l.dir, name) }

func (l *Log) syncDir() error {
	l.stats.dirSyncs.Add(1)
	if err := l.dirFD.Sync(); err != nil {
		return fmt.Errorf("disk: fsync directory %s: %w", l.dir, err)
	}
	return nil
}

// searchLocked finds first in the index.
func (l *Log) searchLocked(first tx.Version) (int, bool) {
	return slices.BinarySearchFunc(l.mu.infos, first, func(s persist.SegmentInfo, v tx.Version) int {
		return cmp.Compare(s.First, v)
	})
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

// Append implements persist.Log; see the package doc. It returns once the
// fdatasync covering the segment returned. Once queued, the segment is
// written even if ctx ends meanwhile (the caller's bytes are in use until
// then).
func (l *Log) Append(ctx context.Context, data []byte) error {
	h, err := persist.DecodeSegmentHeader(data)
	if err != nil {
		return fmt.Errorf("disk: append: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("disk: append segment %d: %w", h.First, err)
	}
	req := reqPool.Get().(*appendReq)
	req.data, req.info = data, h.Info()
	l.mu.Lock()
	if err := l.admitLocked(h.First); err != nil {
		l.mu.Unlock()
		req.data = nil
		reqPool.Put(req)
		return fmt.Errorf("disk: append segment %d: %w", h.First, err)
	}
	l.mu.pending = append(l.mu.pending, h.First)
	l.mu.queue = append(l.mu.queue, req)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // the writer is already woken
	}
	err = <-req.done
	req.data = nil
	reqPool.Put(req)
	if err != nil {
		return fmt.Errorf("disk: append segment %d: %w", h.First, err)
	}
	l.mu.Lock()
	l.mu.claimed = true
	l.mu.Unlock()
	return nil
}

// DeleteDiscarded implements persist.Log. The disk backend's fence is the
// exclusive LOCK taken by Open: no other server can share the directory, so
// holding the lock is winning the log, and Recover already tombstoned the
// discarded frames and cut the torn tail (it must, before the writer
// appends after them). There is nothing left to delete; like every
// backend, it refuses to be called before a claim was stored.
func (l *Log) DeleteDiscarded(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkLocked(); err != nil {
		return err
	}
	if !l.mu.claimed {
		return errors.New("disk: DeleteDiscarded before a claim was stored: only the winner of the log may delete")
	}
	return ctx.Err()
}

// admitLocked checks that a segment starting at first may be queued.
func (l *Log) admitLocked(first tx.Version) error {
	if err := l.checkLocked(); err != nil {
		return err
	}
	if l.mu.failed != nil {
		return fmt.Errorf("log failed earlier, reopen to recover: %w", l.mu.failed)
	}
	if _, found := l.searchLocked(first); found || slices.Contains(l.mu.pending, first) {
		return persist.ErrFenced
	}
	return nil
}

// ReadFrom implements persist.Log: it picks segments from the index and
// reads each with one pread, checking it again (the frame was checked when
// written or recovered; this catches damage since).
func (l *Log) ReadFrom(ctx context.Context, after tx.Version, maxBytes int) ([][]byte, error) {
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	picked, err := persist.SelectReadFrom(l.mu.infos, after, maxBytes)
	if err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("disk: %w", err)
	}
	if len(picked) == 0 {
		l.mu.Unlock()
		return nil, nil
	}
	start, _ := l.searchLocked(picked[0].First)
	infos := slices.Clone(picked)
	locs := slices.Clone(l.mu.locs[start : start+len(picked)])
	l.mu.Unlock()

	out := make([][]byte, 0, len(infos))
	for i, info := range infos {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("disk: read from %d: %w", after, err)
		}
		loc := locs[i]
		data := make([]byte, info.Bytes)
		if _, err := loc.file.f.ReadAt(data, loc.off); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil, fmt.Errorf("disk: read segment %d: %w (truncated meanwhile)", info.First, persist.ErrNotFound)
			}
			return nil, fmt.Errorf("disk: read segment %d from %s offset %d: %w", info.First, l.path(loc.file.name), loc.off, err)
		}
		if h, err := persist.DecodeSegmentHeader(data); err != nil || h.First != info.First {
			return nil, fmt.Errorf("disk: read segment %d from %s offset %d: %w (header says %d)", info.First, l.path(loc.file.name), loc.off, errors.Join(err, persist.ErrCorruption), h.First)
		}
		out = append(out, data)
	}
	return out, nil
}

// Truncate implements persist.Log; retention is file-granular (see the
// package doc).
func (l *Log) Truncate(ctx context.Context, upTo tx.Version) (tx.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("disk: truncate to %d: %w", upTo, err)
	}
	if err := l.check(); err != nil {
		return 0, err
	}
	// Hold the writer between batches: the active file may be rolled here.
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	nFiles, nSegs := l.removablePrefixLocked(upTo)
	blocked := nFiles < len(l.mu.files) && l.mu.files[nFiles] == l.releasableLocked() &&
		nSegs < len(l.mu.infos) && l.mu.infos[nSegs].Last <= upTo
	l.mu.Unlock()
	if blocked {
		if err := l.carryForward(upTo); err != nil {
			return 0, fmt.Errorf("disk: truncate to %d: %w", upTo, err)
		}
	}
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	nFiles, nSegs = l.removablePrefixLocked(upTo)
	doomed := slices.Clone(l.mu.files[:nFiles])
	l.mu.files = slices.Delete(l.mu.files, 0, nFiles)
	l.mu.infos = slices.Delete(l.mu.infos, 0, nSegs)
	l.mu.locs = slices.Delete(l.mu.locs, 0, nSegs)
	oldest := persist.Recovery{Segments: l.mu.infos}.OldestRetained()
	l.mu.Unlock()

	// All closed first: they are out of the index, and a failed removal
	// below must not leak the rest.
	for _, f := range doomed {
		f.f.Close() // a ReadFrom still using it gets os.ErrClosed → ErrNotFound
	}
	// Oldest first, each removal durable before the next, so that a crash
	// or a power cut half-way leaves a contiguous run: removals made durable
	// by one directory fsync at the end may survive in any subset, and a
	// later file gone with an earlier one left is a hole that makes recovery
	// drop everything after it (tests/powerloss, TestTruncatePowerCut...).
	for _, f := range doomed {
		if err := os.Remove(l.path(f.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("disk: truncate: remove log file %s: %w", f.name, err)
		}
		if err := l.syncer.Sync(); err != nil {
			return 0, fmt.Errorf("disk: truncate: %w", err)
		}
	}
	return oldest, nil
}

// releasableLocked returns the file carryForward may release: the file
// being written, or right after recovery (nothing written yet) the file of
// the newest segment.
func (l *Log) releasableLocked() *logFile {
	if l.active != nil || len(l.mu.locs) == 0 {
		return l.active
	}
	return l.mu.locs[len(l.mu.locs)-1].file
}

// removablePrefixLocked returns how many of the oldest files Truncate(upTo)
// removes and how many index entries they hold: the longest prefix of files
// that are neither being written nor hold the newest segment, whose segments
// all end at or below upTo, and whose segments are exactly the oldest
// entries of the index — so that what remains is still a contiguous run.
// (Segments land in files in arrival order, not version order: a straggler
// in a newer file may be older than segments of an older file.)
func (l *Log) removablePrefixLocked(upTo tx.Version) (nFiles, nSegs int) {
	if len(l.mu.infos) == 0 {
		return 0, 0
	}
	newest := l.mu.locs[len(l.mu.locs)-1].file
	count := 0
	var maxLast tx.Version
	for k, f := range l.mu.files {
		if f == l.active || f == newest || f.maxLast > upTo {
			break
		}
		count += f.segments
		maxLast = max(maxLast, f.maxLast)
		if count == 0 || (count < len(l.mu.infos) && l.mu.infos[count-1].Last == maxLast) {
			nFiles, nSegs = k+1, count
		}
	}
	return nFiles, nSegs
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
	policies, err := persist.DecodePolicies(data)
	if err != nil {
		return nil, fmt.Errorf("disk: load policies from %s: %w", policiesName, err)
	}
	return policies, nil
}

// StorePolicies implements persist.Log: write a temp file, fsync it, rename
// it over retention.json, fsync the directory.
func (l *Log) StorePolicies(ctx context.Context, policies map[string]tx.Version) error {
	if err := l.check(); err != nil {
		return err
	}
	data, err := persist.EncodePolicies(policies)
	if err != nil {
		return fmt.Errorf("disk: store policies: %w", err)
	}
	l.policyMu.Lock()
	defer l.policyMu.Unlock()
	if planted("policy-in-place") {
		// A planted bug (plantedbugs builds only): no temp file, no sync.
		return os.WriteFile(l.path(policiesName), data, 0o644)
	}
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

// Close implements persist.Log: it stops the writer (Appends still queued
// fail; a batch being written finishes first), closes the files and releases
// the lock. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.closed = true
	writing := l.mu.writing
	l.mu.Unlock()
	close(l.quit)
	if writing {
		<-l.writerDone
		<-l.checkerDone
	}
	l.mu.Lock()
	files := l.mu.files
	l.mu.files = nil
	failed := l.mu.failed
	l.mu.Unlock()
	if writing && failed == nil {
		l.recordSyncedSizes(files) // lower bounds for the next Recover
	}
	for _, f := range files {
		f.f.Close()
	}
	err := l.dirFD.Close()
	l.lock.Close() // closing the descriptor releases the flock
	if err != nil {
		return fmt.Errorf("disk: close: %w", err)
	}
	return nil
}
