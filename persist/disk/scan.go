package disk

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/internal/dirlock"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// Offline inspection (weaseldb log stat|verify|dump|copy).
//
// Inspect reads a log directory the way Recover does — same frame parser,
// same torn-tail rule, same planning (persist.PlanRecovery) — but changes
// nothing: it reports what recovery would cut or refuse instead of doing
// it. tests/logtool checks that they agree (the frame verify names is the
// one the server refuses; the tail it would cut is the one recovery cuts).

// InspectedFile is one log file as Inspect found it.
type InspectedFile struct {
	Name   string // base name
	Bytes  int64  // file size
	Live   int    // valid live frames
	Dead   int    // tombstoned frames
	Frames int64  // bytes of whole frames (live or dead)
}

// InspectedFrame is one valid live frame.
type InspectedFrame struct {
	File   string // base name of its log file
	Offset int64
	Header persist.SegmentHeader // LeaderID is a copy
}

// Where names the frame for an operator: file and offset.
func (f InspectedFrame) Where() string { return fmt.Sprintf("%s offset %d", f.File, f.Offset) }

// TornTail is an incomplete frame at the end of the newest log file:
// recovery cuts it.
type TornTail struct {
	File   string
	Offset int64
	Bytes  int64      // bytes recovery would cut
	First  tx.Version // as far as the header survived; valid if Named
	Named  bool
	Reason string
}

// Inspection is what Inspect found. Problems that make recovery refuse are
// in Corrupt, Damaged and PlanErr; Torn and Plan.Discarded are the repairs
// recovery would make by itself.
type Inspection struct {
	Dir   string
	Files []InspectedFile // in name (write) order
	// Frames are the valid live frames sorted by First; of two identical
	// copies of one segment (a Truncate that carried it forward) only the
	// newer is kept, as Recover does.
	Frames []InspectedFrame
	Torn   *TornTail
	// Corrupt is the first damaged frame that is not a torn tail (file
	// and offset in the message; wraps persist.ErrCorruption): recovery
	// refuses the directory. Scanning stops at it.
	Corrupt error
	// Damaged is the DAMAGED marker's text (see damage.go), "" if none.
	Damaged string
	// Cut is a log file shorter than the last clean Close left it (see
	// damage.go): recovery refuses the directory. Nil if none.
	Cut error
	// Rescued lists *.rescued files (copies of files deleted under a
	// running server).
	Rescued []string
	// Plan is what recovery would keep (Plan.Segments, in Frames order)
	// and discard after a gap; PlanErr is its refusal.
	Plan    persist.Recovery
	PlanErr error
	// Policies is retention.json's content (nil if absent); PoliciesErr
	// says why it could not be read.
	Policies    map[string]tx.Version
	PoliciesErr error
}

// Inspect reads the log directory dir without changing it (and without its
// lock: see LockHolder). The error is for I/O; what is wrong with the log is
// in the Inspection.
func Inspect(dir string) (*Inspection, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("disk: inspect: %w", err)
	}
	in := &Inspection{Dir: dir, Cut: checkSizes(dir)}
	var names []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == damagedName:
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("disk: inspect: %w", err)
			}
			in.Damaged = strings.TrimSpace(string(data))
		case strings.HasSuffix(name, rescuedSuffix):
			in.Rescued = append(in.Rescued, name)
		case strings.HasSuffix(name, logSuffix):
			if _, ok := persist.ParseSegmentName(strings.TrimSuffix(name, logSuffix)); ok {
				names = append(names, name)
			}
		}
	}
	var frames []InspectedFrame
	var data []byte
	for i, name := range names {
		data, err = readInto(data, filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("disk: inspect: %w", err)
		}
		file := InspectedFile{Name: name, Bytes: int64(len(data))}
		off := 0
		for off < len(data) {
			n, dead, h, err := parseFrame(data[off:])
			if err == nil {
				if dead {
					file.Dead++
				} else {
					file.Live++
					h.LeaderID = bytes.Clone(h.LeaderID)
					frames = append(frames, InspectedFrame{File: name, Offset: int64(off), Header: h})
				}
				off += n
				continue
			}
			if i < len(names)-1 || validFrameAfter(data, off+1) {
				in.Corrupt = fmt.Errorf("log file %s offset %d: damaged frame followed by valid ones (not a torn tail); recovery refuses it: %w",
					filepath.Join(dir, name), off, err)
				break
			}
			info, named := tornInfo(data[off:])
			in.Torn = &TornTail{File: name, Offset: int64(off), Bytes: int64(len(data) - off), First: info.First, Named: named, Reason: err.Error()}
			break
		}
		file.Frames = int64(off)
		in.Files = append(in.Files, file)
		if in.Corrupt != nil {
			break
		}
	}
	slices.SortStableFunc(frames, func(a, b InspectedFrame) int { return cmp.Compare(a.Header.First, b.Header.First) })
	frames, err = dropIdenticalCopies(dir, frames)
	if err != nil {
		return nil, err
	}
	in.Frames = frames
	stored := make([]persist.StoredSegment, len(frames))
	for i, fr := range frames {
		stored[i] = persist.StoredSegment{First: fr.Header.First, Bytes: int64(fr.Header.Bytes), Header: fr.Header}
	}
	in.Plan, in.PlanErr = persist.PlanRecovery(stored)
	in.Policies, in.PoliciesErr = inspectPolicies(dir)
	return in, nil
}

func readInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return buf, err
	}
	buf = slices.Grow(buf[:0], int(st.Size()))[:st.Size()]
	n, err := f.ReadAt(buf, 0)
	if err != nil && n < len(buf) {
		return buf, fmt.Errorf("read %s: %w", path, err)
	}
	return buf[:n], nil
}

// dropIdenticalCopies keeps the newer of two identical frames of one First,
// as Recover's dropCarriedCopies does.
func dropIdenticalCopies(dir string, frames []InspectedFrame) ([]InspectedFrame, error) {
	out := frames[:0]
	for i, fr := range frames {
		if i+1 < len(frames) && frames[i+1].Header.Info() == fr.Header.Info() {
			a, err := ReadFrame(dir, fr)
			if err != nil {
				return nil, err
			}
			b, err := ReadFrame(dir, frames[i+1])
			if err != nil {
				return nil, err
			}
			if bytes.Equal(a, b) {
				continue
			}
		}
		out = append(out, fr)
	}
	return out, nil
}

func inspectPolicies(dir string) (map[string]tx.Version, error) {
	data, err := os.ReadFile(filepath.Join(dir, policiesName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := persist.DecodePolicies(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, policiesName), err)
	}
	return p, nil
}

// ReadFrame reads and validates the frame fr of the log directory dir.
func ReadFrame(dir string, fr InspectedFrame) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, fr.File))
	if err != nil {
		return nil, fmt.Errorf("disk: read frame: %w", err)
	}
	defer f.Close()
	return ReadFrameFrom(f, fr)
}

// ReadFrameFrom reads and validates the frame fr from f, its open log file.
func ReadFrameFrom(f *os.File, fr InspectedFrame) ([]byte, error) {
	data := make([]byte, fr.Header.Bytes)
	if _, err := f.ReadAt(data, fr.Offset); err != nil {
		return nil, fmt.Errorf("disk: read segment %d at %s: %w", fr.Header.First, fr.Where(), err)
	}
	if h, err := persist.DecodeSegmentHeader(data); err != nil || h.First != fr.Header.First {
		return nil, fmt.Errorf("disk: segment %d at %s changed since it was inspected: %w", fr.Header.First, fr.Where(), errors.Join(err, persist.ErrCorruption))
	}
	return data, nil
}

// HasLog reports whether dir holds log files (or a DAMAGED marker): a copy
// must not write into it. A missing directory holds none.
func HasLog(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, logSuffix) || n == damagedName || n == policiesName {
			return true, nil
		}
	}
	return false, nil
}

// lockWait is how long Open waits for the directory lock before it fails:
// long enough to ride over an offline tool's momentary probe (ProbeLock),
// short enough that a second server fails at once.
const lockWait = 2 * time.Second

// acquireLock takes the directory lock (dirlock), retrying for up to
// lockWait while another holder has it.
func acquireLock(path string) (*dirlock.Lock, error) {
	deadline := time.Now().Add(lockWait)
	for {
		l, err := dirlock.Acquire(path)
		if err == nil || !errors.Is(err, dirlock.ErrLocked) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProbeLock reports who holds dir's lock ("" if nobody), taking and at once
// releasing a shared lock: stat, verify and dump read without holding it, so
// that they never keep a server from starting.
func ProbeLock(dir string) (holder string, err error) {
	f, err := ShareLock(dir)
	if err != nil {
		if errors.Is(err, errInUse) {
			return LockHolder(dir), nil
		}
		return "", err
	}
	if f != nil {
		f.Close()
	}
	return "", nil
}

var errInUse = errors.New("in use")

// ShareLock takes a shared lock on dir's LOCK file, so that no server opens
// the directory while an offline tool copies it (Open waits lockWait, then
// fails naming the holder). If a Log holds the
// directory, it fails naming the holder (see LockHolder). Close the returned
// file to release it. A directory without a LOCK file needs none: nil, nil.
func ShareLock(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("disk: open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("disk: log directory %s is %w: %s holds %s", dir, errInUse, LockHolder(dir), lockName)
		}
		return nil, fmt.Errorf("disk: lock %s: %w", path, err)
	}
	return f, nil
}

// LockHolder names the process holding dir's LOCK file ("pid 123
// (weaseldb --data-dir d)"), from /proc/locks, or says it cannot tell.
func LockHolder(dir string) string {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, lockName), &st); err != nil {
		return "another process"
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return "another process"
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
	want := fmt.Sprintf(":%d", st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || !strings.HasSuffix(fields[5], want) {
			continue
		}
		dev := strings.Split(fields[5], ":")
		if len(dev) != 3 || !sameDev(dev[0], dev[1], st.Dev) {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd = bytes.TrimRight(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}), " ")
		if len(cmd) == 0 {
			return fmt.Sprintf("process %d", pid)
		}
		return fmt.Sprintf("process %d (%s)", pid, cmd)
	}
	return "another process"
}

func sameDev(major, minor string, dev uint64) bool {
	ma, err1 := strconv.ParseUint(major, 16, 32)
	mi, err2 := strconv.ParseUint(minor, 16, 32)
	return err1 == nil && err2 == nil && uint64(unix.Major(dev)) == ma && uint64(unix.Minor(dev)) == mi
}
