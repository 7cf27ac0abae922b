package disk

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

const (
	liveMagic = "WSEG" // persist's segment magic
	deadMagic = "WDED" // a tombstoned frame (see the package doc)
)

// frame is a valid live frame found by the recovery scan.
type frame struct {
	file *logFile
	off  int64
	info persist.SegmentInfo
}

// parseFrame validates the frame at the start of b and returns its length,
// whether it is a tombstone, and its header. Errors wrap
// persist.ErrCorruption. b's first four bytes are changed and restored while
// a tombstone is checked.
func parseFrame(b []byte) (n int, dead bool, h persist.SegmentHeader, err error) {
	if len(b) < persist.SegmentHeaderBytes {
		return 0, false, h, fmt.Errorf("%w: %d bytes left, shorter than a segment header", persist.ErrCorruption, len(b))
	}
	switch string(b[:4]) {
	case liveMagic:
	case deadMagic:
		dead = true
	default:
		return 0, false, h, fmt.Errorf("%w: frame magic %q", persist.ErrCorruption, b[:4])
	}
	idLen := uint64(binary.LittleEndian.Uint16(b[40:]))
	bodyLen := uint64(binary.LittleEndian.Uint32(b[36:]))
	size := persist.SegmentHeaderBytes + idLen + bodyLen
	if size > uint64(len(b)) {
		return 0, false, h, fmt.Errorf("%w: frame of %d bytes, only %d left (torn)", persist.ErrCorruption, size, len(b))
	}
	n = int(size)
	if dead {
		copy(b, liveMagic)
		defer copy(b, deadMagic)
	}
	h, err = persist.DecodeSegmentHeader(b[:n])
	if err != nil {
		return 0, false, h, err
	}
	return n, dead, h, nil
}

// validFrameAfter reports whether a valid frame (live or tombstone) starts
// anywhere in data at or after from: then a bad frame before it is not a
// torn tail but damage in the middle.
func validFrameAfter(data []byte, from int) bool {
	for from < len(data) {
		j := bytes.IndexByte(data[from:], 'W')
		if j < 0 {
			return false
		}
		p := from + j
		if _, _, _, err := parseFrame(data[p:]); err == nil {
			return true
		}
		from = p + 1
	}
	return false
}

// tornInfo describes a torn frame for Recovery.Discarded, if enough of its
// header survived to name it.
func tornInfo(b []byte) (persist.SegmentInfo, bool) {
	if len(b) < 24 || (string(b[:4]) != liveMagic && string(b[:4]) != deadMagic) {
		return persist.SegmentInfo{}, false
	}
	info := persist.SegmentInfo{Bytes: int64(len(b))}
	info.First = persistVersion(b[16:])
	info.Last = info.First
	if len(b) >= 32 {
		info.Last = persistVersion(b[24:])
	}
	return info, true
}

func persistVersion(b []byte) tx.Version { return tx.Version(binary.LittleEndian.Uint64(b)) }

// Recover implements persist.Log; see the package doc.
func (l *Log) Recover(ctx context.Context) (persist.Recovery, error) {
	l.mu.Lock()
	if l.mu.closed || l.mu.recovered {
		l.mu.Unlock()
		return persist.Recovery{}, errors.New("disk: Recover on a closed or already recovered log")
	}
	l.mu.Unlock()
	rec, files, err := l.recover(ctx)
	if err != nil {
		for _, f := range files {
			f.f.Close()
		}
		return persist.Recovery{}, fmt.Errorf("disk: recover %s: %w", l.dir, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		for _, f := range files {
			f.f.Close()
		}
		return persist.Recovery{}, errors.New("disk: log is closed")
	}
	l.mu.files = files
	l.mu.recovered = true
	l.startWriter()
	return rec, nil
}

// recover scans, plans and repairs; it fills the index (l.mu.infos, locs)
// and returns the files still open. On error the caller closes them.
func (l *Log) recover(ctx context.Context) (persist.Recovery, []*logFile, error) {
	if err := l.checkNotDamaged(); err != nil {
		return persist.Recovery{}, nil, err
	}
	if err := l.checkSyncedSizes(); err != nil {
		return persist.Recovery{}, nil, err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return persist.Recovery{}, nil, fmt.Errorf("list: %w", err)
	}
	dirChanged := false
	var files []*logFile
	for _, e := range entries {
		name := e.Name()
		if name == policiesName+tempSuffix || name == sizesName+tempSuffix { // a write that never finished
			if err := os.Remove(l.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return persist.Recovery{}, files, fmt.Errorf("remove %s: %w", name, err)
			}
			dirChanged = true
			continue
		}
		seq, ok := persist.ParseSegmentName(strings.TrimSuffix(name, logSuffix))
		if !ok || !strings.HasSuffix(name, logSuffix) {
			continue // LOCK, retention.json, anything else
		}
		fd, err := os.OpenFile(l.path(name), os.O_RDWR, 0)
		if err != nil {
			return persist.Recovery{}, files, fmt.Errorf("open log file: %w", err)
		}
		files = append(files, &logFile{seq: uint64(seq), name: name, f: fd})
		l.nextSeq = uint64(seq) + 1
	}
	if l.nextSeq == 0 {
		l.nextSeq = 1
	}

	// Scan every frame. os.ReadDir sorts by name: files in write order.
	var frames []frame
	tornFile, tornOff := -1, int64(0)
	var torn persist.SegmentInfo
	tornNamed := false
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return persist.Recovery{}, files, err
		}
		data, err := os.ReadFile(l.path(f.name))
		if err != nil {
			return persist.Recovery{}, files, fmt.Errorf("read log file: %w", err)
		}
		off := 0
		for off < len(data) {
			n, dead, h, err := parseFrame(data[off:])
			if err == nil {
				if !dead {
					frames = append(frames, frame{file: f, off: int64(off), info: h.Info()})
				}
				off += n
				continue
			}
			if i < len(files)-1 || validFrameAfter(data, off+1) {
				// An operator must be able to find it: name file and offset.
				return persist.Recovery{}, files, fmt.Errorf("log file %s offset %d: damaged frame followed by valid ones (not a torn tail), refusing to skip it: %w",
					l.path(f.name), off, err)
			}
			tornFile, tornOff = i, int64(off)
			torn, tornNamed = tornInfo(data[off:])
			// Which of the two it was cannot be told from the bytes: say
			// both (a server that saw the file cut would have left DAMAGED).
			l.logger.Warn("disk: recovery cuts an incomplete frame at the end of the newest log file: a write torn by a crash (never acknowledged), or a file cut short while no server ran (then acknowledged commits in it are lost)",
				"file", f.name, "offset", off, "bytes", len(data)-off, "first_version", uint64(torn.First), "reason", err.Error())
			break
		}
		f.size = int64(off)
	}

	// Stable: for one First, the frame of the older file comes first.
	slices.SortStableFunc(frames, func(a, b frame) int { return cmp.Compare(a.info.First, b.info.First) })
	frames = l.dropCarriedCopies(frames)
	stored := make([]persist.StoredSegment, len(frames))
	for i, fr := range frames {
		stored[i] = persist.StoredSegment{
			First:  fr.info.First,
			Bytes:  fr.info.Bytes,
			Header: persist.SegmentHeader{First: fr.info.First, Last: fr.info.Last, Bytes: int(fr.info.Bytes)},
		}
	}
	rec, err := persist.PlanRecovery(stored)
	if err != nil {
		return persist.Recovery{}, files, err
	}

	// Repair: cut the torn tail, tombstone the segments after a gap.
	if tornFile >= 0 {
		f := files[tornFile]
		if err := f.f.Truncate(tornOff); err != nil {
			return persist.Recovery{}, files, fmt.Errorf("cut torn tail of %s at %d: %w", f.name, tornOff, err)
		}
		if err := l.syncFile(f); err != nil {
			return persist.Recovery{}, files, err
		}
	}
	run := frames[:len(rec.Segments)]
	touched := map[*logFile]bool{}
	for _, fr := range frames[len(run):] {
		l.logger.Warn("disk: recovery discarded a segment that followed a gap (never acknowledged)",
			"first", fr.info.First, "last", fr.info.Last, "bytes", fr.info.Bytes, "file", fr.file.name, "offset", fr.off)
		if _, err := fr.file.f.WriteAt([]byte(deadMagic), fr.off); err != nil {
			return persist.Recovery{}, files, fmt.Errorf("tombstone segment %d in %s at %d: %w", fr.info.First, fr.file.name, fr.off, err)
		}
		touched[fr.file] = true
	}
	for f := range touched {
		if err := l.syncFile(f); err != nil {
			return persist.Recovery{}, files, err
		}
	}
	if tornNamed {
		rec.Discarded = append(rec.Discarded, torn)
	}

	// Index the run; drop the files left without a live segment.
	l.mu.Lock()
	l.mu.infos = l.mu.infos[:0]
	l.mu.locs = l.mu.locs[:0]
	for _, fr := range run {
		l.insertLocked(fr.info, location{file: fr.file, off: fr.off})
	}
	l.mu.Unlock()
	kept := files[:0]
	for _, f := range files {
		if f.segments > 0 {
			kept = append(kept, f)
			continue
		}
		f.f.Close()
		if err := os.Remove(l.path(f.name)); err != nil {
			return persist.Recovery{}, kept, fmt.Errorf("remove log file %s without live segments: %w", f.name, err)
		}
		l.logger.Info("disk: recovery removed a log file without live segments", "file", f.name)
		dirChanged = true
	}
	if dirChanged {
		if err := l.syncDir(); err != nil {
			return persist.Recovery{}, kept, err
		}
	}
	return rec, kept, nil
}

func (l *Log) syncFile(f *logFile) error {
	l.stats.fileSyncs.Add(1)
	if err := unix.Fdatasync(int(f.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync %s: %w", f.name, err)
	}
	return nil
}

// dropCarriedCopies removes, from frames sorted by First (stably, in file
// order), the older of two identical frames of one First: the original of a
// segment Truncate copied forward, whose file's removal did not become
// durable before a crash. Frames of one First that differ are left for
// PlanRecovery to refuse.
func (l *Log) dropCarriedCopies(frames []frame) []frame {
	out := frames[:0]
	for i, fr := range frames {
		if i+1 < len(frames) {
			next := frames[i+1]
			if next.info == fr.info && l.sameBytes(fr, next) {
				l.logger.Info("disk: recovery found a segment copied forward twice; keeping the newer copy",
					"first", fr.info.First, "old", fr.file.name, "new", next.file.name)
				continue
			}
		}
		out = append(out, fr)
	}
	return out
}

func (l *Log) sameBytes(a, b frame) bool {
	x := make([]byte, a.info.Bytes)
	y := make([]byte, b.info.Bytes)
	if _, err := a.file.f.ReadAt(x, a.off); err != nil {
		return false
	}
	if _, err := b.file.f.ReadAt(y, b.off); err != nil {
		return false
	}
	return bytes.Equal(x, y)
}
