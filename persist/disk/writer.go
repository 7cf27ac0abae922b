package disk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// iovMax is the most buffers one pwritev takes (IOV_MAX on Linux).
const iovMax = 1024

// errClosed fails Appends still queued when the Log closes.
var errClosed = errors.New("log closed before the segment was written")

// startWriter starts the group-commit goroutine; Recover calls it once.
func (l *Log) startWriter() {
	l.mu.writing = true
	go l.writeLoop()
	if l.checkEvery > 0 {
		go l.checkLoop(l.checkEvery)
	} else {
		close(l.checkerDone)
	}
}

// writeLoop is the writer goroutine: it takes every queued Append at once,
// writes and syncs them as one batch, and repeats. While it syncs, Appends
// arriving meanwhile queue up and become the next batch (group commit).
func (l *Log) writeLoop() {
	defer close(l.writerDone)
	for {
		select {
		case <-l.wake:
		case <-l.quit:
			l.mu.Lock()
			batch := l.mu.queue
			l.mu.queue = nil
			l.mu.Unlock()
			l.finish(batch, errClosed)
			return
		}
		l.mu.Lock()
		// Swap the queue with the writer's spare slice: no allocation in
		// steady state.
		l.batch, l.mu.queue = l.mu.queue, l.batch[:0]
		l.mu.Unlock()
		if len(l.batch) > 0 {
			l.wmu.Lock()
			l.writeBatch(l.batch)
			l.wmu.Unlock()
			clear(l.batch) // drop references to the requests
		}
	}
}

// writeBatch writes batch at the end of the active file, fdatasyncs it, and
// answers every request.
func (l *Log) writeBatch(batch []*appendReq) {
	var total int64
	for _, r := range batch {
		total += int64(len(r.data))
	}
	if err := l.ensureRoom(total); err != nil {
		l.finish(batch, err)
		return
	}
	f := l.active
	start := f.size
	if err := l.writeAt(f, batch, start); err != nil {
		// Cut the file back to its last whole frame so that the next batch
		// continues a clean run of frames.
		if terr := f.f.Truncate(start); terr != nil {
			err = l.fail(fmt.Errorf("%w; cutting %s back to %d bytes also failed: %v", err, f.name, start, terr))
		}
		l.finish(batch, err)
		return
	}
	l.stats.fileSyncs.Add(1)
	if planted("no-fdatasync") {
		// A planted bug (plantedbugs builds only): acknowledge unsynced.
	} else if err := unix.Fdatasync(int(f.f.Fd())); err != nil &&
		!(planted("fsync-retry") && unix.Fdatasync(int(f.f.Fd())) == nil) { // planted: trust a retry
		l.finish(batch, l.fail(fmt.Errorf("fdatasync %s: %w", f.name, err)))
		return
	}
	// The file may have been deleted or cut behind our back: then the
	// sync made nothing durable that a restart would find.
	if rescue, err := l.checkFile(f, start+total, false); err != nil {
		if errors.Is(err, persist.ErrDamaged) {
			err = l.damaged(err, f, rescue)
		} else {
			err = l.fail(err)
		}
		l.finish(batch, err)
		return
	}
	f.size = start + total
	l.stats.groupCommits.Add(1)
	l.stats.appends.Add(uint64(len(batch)))

	l.mu.Lock()
	off := start
	for _, r := range batch {
		l.insertLocked(r.info, location{file: f, off: off})
		off += int64(len(r.data))
	}
	l.unpendLocked(batch)
	l.mu.Unlock()
	for _, r := range batch {
		r.done <- nil
	}
}

// writeAt writes the batch's segments at off with pwritev (several calls if
// the batch has more than iovMax segments or the kernel writes short).
func (l *Log) writeAt(f *logFile, batch []*appendReq, off int64) error {
	if fault := l.writeFault.Load(); fault != nil {
		if ferr := (*fault)(f.name); ferr != nil {
			half := batch[0].data[:len(batch[0].data)/2] // the part that fit
			f.f.WriteAt(half, off)
			return fmt.Errorf("write %s: %w", f.name, ferr)
		}
	}
	iovs := l.iovs[:0]
	for _, r := range batch {
		iovs = append(iovs, r.data)
	}
	l.iovs = iovs
	defer clear(iovs)
	for len(iovs) > 0 {
		chunk := iovs[:min(len(iovs), iovMax)]
		n, err := unix.Pwritev(int(f.f.Fd()), chunk, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write %s at %d: %w", f.name, off, err)
		}
		if n == 0 {
			return fmt.Errorf("write %s at %d: %w", f.name, off, unix.EIO)
		}
		off += int64(n)
		// Skip the buffers written whole, trim the one written in part.
		for n > 0 {
			if n >= len(iovs[0]) {
				n -= len(iovs[0])
				iovs = iovs[1:]
				continue
			}
			iovs[0] = iovs[0][n:]
			n = 0
		}
	}
	return nil
}

// ensureRoom makes l.active a file that takes total more bytes: the current
// file unless the batch would push a non-empty file past maxFileBytes, else
// a new one (always a new one for the first batch after Recover).
func (l *Log) ensureRoom(total int64) error {
	if f := l.active; f != nil && (f.size == 0 || f.size+total <= l.maxFileBytes) {
		return nil
	}
	return l.roll()
}

// roll makes a new, empty log file the active one.
func (l *Log) roll() error {
	seq := l.nextSeq
	name := LogFileName(seq)
	fd, err := os.OpenFile(l.path(name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	// Reserve the blocks now so that appends do not allocate them one by
	// one (fewer metadata updates per fdatasync). KEEP_SIZE: the file's
	// size still marks the end of the frames. Best effort: a file system
	// without fallocate, or without room for all of it, still works.
	if err := unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, l.maxFileBytes); err != nil {
		l.releaseReservation(fd, name, err)
	}
	if planted("no-dir-sync-after-create") {
		// A planted bug (plantedbugs builds only): the new entry may vanish.
	} else if err := l.syncer.Sync(); err != nil {
		fd.Close()
		os.Remove(l.path(name))
		return fmt.Errorf("create log file %s: %w", name, err)
	}
	l.nextSeq++
	l.stats.filesCreated.Add(1)
	f := &logFile{seq: seq, name: name, f: fd}
	l.mu.Lock()
	l.mu.files = append(l.mu.files, f)
	l.active = f // under mu: Truncate compares with it
	l.mu.Unlock()
	return nil
}

// releaseReservation gives back what a failed preallocation reserved: ext4
// keeps the blocks it found before running out (on an 8 MiB file system, a
// failed 64 MiB fallocate left the file holding every free block, so the
// policies file and the next roll had no room). The file is still empty:
// cutting it to zero frees exactly the reservation (punching a hole does
// not: ext4 ignores a hole past the end of the file).
func (l *Log) releaseReservation(fd *os.File, name string, cause error) {
	if errors.Is(cause, unix.EOPNOTSUPP) || errors.Is(cause, unix.ENOSYS) {
		return // nothing was reserved
	}
	err := fd.Truncate(0) // frees the blocks past the (zero) size
	l.logger.Warn("disk: could not preallocate a new log file; writing without a reservation",
		"file", name, "bytes", l.maxFileBytes, "err", cause.Error(), "released", err == nil)
}

// fail records a sticky failure and returns err.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	if l.mu.failed == nil {
		l.mu.failed = err
	}
	l.mu.Unlock()
	l.logger.Error("disk: log failed; Appends fail until the log is reopened", "err", err)
	return err
}

// finish answers every request of batch with err.
func (l *Log) finish(batch []*appendReq, err error) {
	l.mu.Lock()
	l.unpendLocked(batch)
	l.mu.Unlock()
	for _, r := range batch {
		r.done <- err
	}
}

// unpendLocked removes the batch's Firsts from the in-flight set.
func (l *Log) unpendLocked(batch []*appendReq) {
	p := l.mu.pending
	for _, r := range batch {
		for i, v := range p {
			if v == r.info.First {
				p[i] = p[len(p)-1]
				p = p[:len(p)-1]
				break
			}
		}
	}
	l.mu.pending = p
}

// insertLocked adds a stored segment to the index.
func (l *Log) insertLocked(info persist.SegmentInfo, loc location) {
	i, _ := l.searchLocked(info.First)
	if i == len(l.mu.infos) { // the common case: the newest segment
		l.mu.infos = append(l.mu.infos, info)
		l.mu.locs = append(l.mu.locs, loc)
	} else {
		l.mu.infos = insertAt(l.mu.infos, i, info)
		l.mu.locs = insertAt(l.mu.locs, i, loc)
	}
	loc.file.segments++
	loc.file.maxLast = max(loc.file.maxLast, info.Last)
}

func insertAt[T any](s []T, i int, v T) []T {
	var zero T
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// carryBytesMax bounds what Truncate copies forward out of the active file.
const carryBytesMax = 1 << 20

// carryForwardLocked lets Truncate(upTo) release the file being written when
// it holds segments to delete: it rolls to a new file and copies the
// segments of the old one that must stay (Last > upTo, or the newest) into
// it, so that the old file can go as a whole. It does nothing if more than
// carryBytesMax would be copied (then the file goes once it is full, as
// usual). Caller holds l.wmu (the writer is between batches) but not l.mu.
//
// Crash safety: the copies are synced before the index points at them; if
// the machine dies before the old file's removal is durable, recovery finds
// two identical frames of one First and keeps the newer (see recover).
func (l *Log) carryForward(upTo tx.Version) error {
	l.mu.Lock()
	old := l.releasableLocked()
	if old == nil {
		l.mu.Unlock()
		return nil
	}
	var carry []int // index positions of the segments to copy
	var bytes int64
	wanted := false
	for i, loc := range l.mu.locs {
		if loc.file != old {
			continue
		}
		if l.mu.infos[i].Last > upTo || i == len(l.mu.locs)-1 {
			carry = append(carry, i)
			bytes += l.mu.infos[i].Bytes
		} else {
			wanted = true
		}
	}
	var infos []persist.SegmentInfo
	var offs []int64
	for _, i := range carry {
		infos = append(infos, l.mu.infos[i])
		offs = append(offs, l.mu.locs[i].off)
	}
	l.mu.Unlock()
	if !wanted || bytes > carryBytesMax {
		return nil
	}
	buf := make([]byte, bytes)
	var at int64
	for k, info := range infos {
		if _, err := old.f.ReadAt(buf[at:at+info.Bytes], offs[k]); err != nil {
			return fmt.Errorf("carry segment %d forward from %s: %w", info.First, old.name, err)
		}
		at += info.Bytes
	}
	if err := l.roll(); err != nil {
		return err
	}
	nf := l.active
	if _, err := nf.f.WriteAt(buf, 0); err != nil {
		nf.f.Truncate(0)
		return fmt.Errorf("carry forward into %s: %w", nf.name, err)
	}
	if err := l.syncFile(nf); err != nil {
		return l.fail(err)
	}
	nf.size = bytes
	l.mu.Lock()
	defer l.mu.Unlock()
	at = 0
	for _, info := range infos {
		i, found := l.searchLocked(info.First)
		if found && l.mu.locs[i].file == old { // not truncated meanwhile
			l.mu.locs[i] = location{file: nf, off: at}
			old.segments--
			nf.segments++
			nf.maxLast = max(nf.maxLast, info.Last)
		}
		at += info.Bytes
	}
	old.maxLast = 0
	for i, loc := range l.mu.locs {
		if loc.file == old {
			old.maxLast = max(old.maxLast, l.mu.infos[i].Last)
		}
	}
	return nil
}
