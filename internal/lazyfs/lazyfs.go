// Package lazyfs is a FUSE file system for power-loss tests: it serves a
// directory tree whose contents live in a backing directory, and remembers,
// per file, every write and truncation since that file's last
// fsync/fdatasync and, per directory, every create, rename and unlink since
// that directory's last fsync. Those are the pending state a real disk may
// lose when the power goes.
//
// A power cut (FS.Cut) stops serving, keeps the durable state and, chosen by
// a random source, one of the outcomes a disk may legally produce for what
// was pending: all of it lost; a prefix of each file's pending writes kept;
// the last kept write torn at a random byte (past the tear, an appending
// write may read as zeros: the size reached the disk, the data did not);
// each pending directory change kept or lost on its own. Then it unmounts, rewrites the backing store to
// that surviving state and mounts it again, all of it durable, for the next
// run.
//
// Faults (FS.InjectFault) fail a chosen fsync/fdatasync or write with EIO or
// ENOSPC. A failed fsync behaves as Linux's does since "fsyncgate": the
// dirty data stays readable, but it is never made durable, not even by a
// later fsync that succeeds.
//
// It is the equivalent of Jepsen's LazyFS and Pebble's crash-cloning VFS for
// a real binary: SIGKILL cannot show a missing fsync (the page cache
// survives it), a power cut does.
//
// Limits: regular files and directories only (no hard links, symlinks or
// device nodes); one big lock (it is for tests, not speed); file locks are
// left to the kernel (local to this machine, which is all the server's LOCK
// file needs). Mounting needs root and /dev/fuse (DirectMountStrict: no
// fusermount helper is used).
package lazyfs

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// unmountTimeout bounds how long an unmount waits for the FUSE server's
// loops before it aborts the connection: a hung mount must never hang a test.
var unmountTimeout = 10 * time.Second

// FS is a mounted lazy file system. Its methods are safe for concurrent use.
type FS struct {
	backing, mountpoint string // immutable

	mu      sync.Mutex
	frozen  bool // a power cut is under way: every operation fails with EIO
	server  *fuse.Server
	dev     uint64 // st_dev of the mount, for aborting the FUSE connection
	nextID  uint64
	root    *mdir
	files   map[uint64]*mfile
	dirs    map[uint64]*mdir
	faults  []*Fault
	stats   Stats
	mounted bool
}

// Stats counts what the file system saw since Mount.
type Stats struct {
	Writes, Fsyncs, DirFsyncs, FaultsHit uint64
	Cuts                                 uint64
}

// Errors an operation fails with while the power is off.
var errFrozen = syscall.EIO

// mfile is the model of one regular file. Its live content is the backing
// file f; ops are the changes not yet known durable, with what they
// overwrote, so that a cut can rebuild any legal durable state.
type mfile struct {
	id   uint64
	name string // the last name it had, for fault matching and messages
	mode uint32
	f    *os.File
	size int64
	ops  []fileOp
	// doomed: an op in ops was covered by a failed fsync. Until the cut the
	// history is kept whole (synced ops too), since undoing a doomed write
	// needs every later one undone and redone around it.
	doomed bool
}

type opState uint8

const (
	opPending opState = iota
	opSynced          // covered by an fsync that succeeded (kept only while doomed)
	opDoomed          // covered by an fsync that failed: never durable
)

// fileOp is one write (data at off) or truncation (to size off), with the
// state it replaced: the old size and the old bytes at [undoOff, ...).
type fileOp struct {
	truncate bool
	state    opState
	off      int64
	data     []byte
	oldSize  int64
	undoOff  int64
	undo     []byte
}

// mdir is the model of one directory: its live entries, the entries as of
// its last fsync, and the changes since.
type mdir struct {
	id      uint64
	name    string
	mode    uint32
	live    map[string]entry
	durable map[string]entry
	ops     []dirOp
}

// entry is one directory entry: exactly one of file, dir is set.
type entry struct {
	file *mfile
	dir  *mdir
}

// dirOp is one pending change of a directory: name now names e (or, with
// remove, nothing); from, when set, is the old name of a rename within the
// directory, gone in the same step (a rename is atomic).
type dirOp struct {
	name   string
	e      entry
	remove bool
	from   string
}

// Mount creates the backing directory (it must be empty or absent) and
// mounts an empty lazy file system on mountpoint.
func Mount(backing, mountpoint string) (*FS, error) {
	if err := os.MkdirAll(backing, 0o755); err != nil {
		return nil, fmt.Errorf("lazyfs: backing directory: %w", err)
	}
	if ents, err := os.ReadDir(backing); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("lazyfs: backing directory %s must be empty (%d entries, %v)", backing, len(ents), err)
	}
	fsys := &FS{backing: backing, mountpoint: mountpoint, files: map[uint64]*mfile{}, dirs: map[uint64]*mdir{}}
	fsys.nextID = 2
	fsys.root = &mdir{id: 1, mode: 0o755, live: map[string]entry{}, durable: map[string]entry{}}
	fsys.dirs[1] = fsys.root
	if err := fsys.mount(); err != nil {
		return nil, err
	}
	return fsys, nil
}

// CanMount reports whether a FUSE file system can be mounted here (root,
// /dev/fuse), and if not, why.
func CanMount() error {
	if os.Geteuid() != 0 {
		return errors.New("lazyfs needs root to mount FUSE with DirectMount")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("lazyfs: /dev/fuse: %w", err)
	}
	f.Close()
	return nil
}

// Mountpoint returns where the file system is mounted.
func (fsys *FS) Mountpoint() string { return fsys.mountpoint }

// Stats returns the counters.
func (fsys *FS) Stats() Stats {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	return fsys.stats
}

func (fsys *FS) mount() error {
	if err := os.MkdirAll(fsys.mountpoint, 0o755); err != nil {
		return fmt.Errorf("lazyfs: mountpoint: %w", err)
	}
	fsys.mu.Lock()
	fsys.frozen = false
	fsys.mu.Unlock()
	timeout := time.Second
	zero := time.Duration(0)
	root := &dirNode{fsys: fsys, m: fsys.root}
	srv, err := fs.Mount(fsys.mountpoint, root, &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true,
			FsName:            "lazyfs",
			Name:              "lazyfs",
			DisableXAttrs:     true,
		},
	})
	if err != nil {
		return fmt.Errorf("lazyfs: mount %s: %w", fsys.mountpoint, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fsys.mountpoint, &st); err != nil {
		srv.Unmount()
		return fmt.Errorf("lazyfs: stat mountpoint: %w", err)
	}
	fsys.mu.Lock()
	fsys.server, fsys.dev, fsys.mounted = srv, st.Dev, true
	fsys.mu.Unlock()
	return nil
}

// Freeze stops serving: from now on every operation fails with EIO and
// nothing more becomes durable. It is the instant of the power cut; kill
// the processes using the mount after it, then call Cut.
func (fsys *FS) Freeze() {
	fsys.mu.Lock()
	fsys.frozen = true
	fsys.mu.Unlock()
}

// Close unmounts (lazily and by aborting the connection if it must, so that
// it never hangs) and closes the backing files. The backing directory stays.
func (fsys *FS) Close() error {
	fsys.Freeze()
	err := fsys.unmount()
	fsys.mu.Lock()
	for _, f := range fsys.files {
		f.f.Close()
	}
	fsys.mu.Unlock()
	return err
}

func (fsys *FS) unmount() error {
	fsys.mu.Lock()
	srv, dev, mounted := fsys.server, fsys.dev, fsys.mounted
	fsys.mounted = false
	fsys.mu.Unlock()
	if !mounted {
		return nil
	}
	var err error
	for try := 0; try < 20; try++ {
		if err = syscall.Unmount(fsys.mountpoint, 0); err == nil || err == syscall.EINVAL {
			err = nil
			break
		}
		time.Sleep(time.Duration(try+1) * 5 * time.Millisecond)
	}
	if err != nil {
		// Someone still uses it: detach it from the tree now; the kernel
		// drops it when the last user goes (or when the connection aborts).
		if derr := syscall.Unmount(fsys.mountpoint, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("lazyfs: unmount %s: %v; lazy unmount: %w", fsys.mountpoint, err, derr)
		}
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(unmountTimeout):
		abortConnection(dev)
		select {
		case <-done:
		case <-time.After(unmountTimeout):
			return fmt.Errorf("lazyfs: FUSE server of %s did not stop after unmount and abort", fsys.mountpoint)
		}
	}
	return nil
}

// abortConnection aborts the FUSE connection of the device dev (fusectl):
// every request waiting on it fails, so nothing can hang on the mount.
func abortConnection(dev uint64) {
	const ctl = "/sys/fs/fuse/connections"
	minor := (dev & 0xff) | ((dev >> 12) & 0xffffff00)
	path := fmt.Sprintf("%s/%d/abort", ctl, minor)
	if _, err := os.Stat(path); err != nil {
		// fusectl is often not mounted (containers): mount it, best effort.
		syscall.Mount("fusectl", ctl, "fusectl", 0, "")
	}
	os.WriteFile(path, []byte("1"), 0o200)
}

// Fault fails matching operations with Errno.
type Fault struct {
	Op    FaultOp
	Name  string        // substring of the file's base name; "" matches every file
	Errno syscall.Errno // syscall.EIO or syscall.ENOSPC
	Skip  int           // let this many matching operations succeed first
	Count int           // then fail this many; 0 means every one from then on
	// Freeze: instead of failing just this operation, cut the power at it
	// (as Freeze does): it and everything after fail with EIO.
	Freeze bool
	hits   int
}

// FaultOp is the operation a Fault fails.
type FaultOp uint8

const (
	FaultFsync    FaultOp = iota + 1 // fsync/fdatasync of a regular file
	FaultWrite                       // write to a regular file
	FaultUnlink                      // unlink of a regular file (with Freeze: a cut mid-way through removals)
	FaultDirFsync                    // fsync of a directory (Name matches the directory's name; "" any)
)

// InjectFault adds a fault; ClearFaults removes them all.
func (fsys *FS) InjectFault(f Fault) {
	fsys.mu.Lock()
	fsys.faults = append(fsys.faults, &f)
	fsys.mu.Unlock()
}

// ClearFaults removes every fault.
func (fsys *FS) ClearFaults() {
	fsys.mu.Lock()
	fsys.faults = nil
	fsys.mu.Unlock()
}

// faultLocked returns the errno a matching fault injects, or 0.
func (fsys *FS) faultLocked(op FaultOp, name string) syscall.Errno {
	for _, f := range fsys.faults {
		if f.Op != op || !strings.Contains(name, f.Name) {
			continue
		}
		f.hits++
		if f.hits <= f.Skip || (f.Count > 0 && f.hits > f.Skip+f.Count) {
			continue
		}
		fsys.stats.FaultsHit++
		if f.Freeze {
			fsys.frozen = true
			return errFrozen
		}
		return f.Errno
	}
	return 0
}

// --- the model's operations (caller holds fsys.mu) ---

func (fsys *FS) newFileLocked(name string, mode uint32) (*mfile, error) {
	id := fsys.nextID
	fsys.nextID++
	f, err := os.OpenFile(fsys.storePath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	m := &mfile{id: id, name: name, mode: mode & 0o7777, f: f}
	fsys.files[id] = m
	return m, nil
}

func (fsys *FS) newDirLocked(name string, mode uint32) *mdir {
	id := fsys.nextID
	fsys.nextID++
	d := &mdir{id: id, name: name, mode: mode & 0o7777, live: map[string]entry{}, durable: map[string]entry{}}
	fsys.dirs[id] = d
	return d
}

func (fsys *FS) storePath(id uint64) string {
	return filepath.Join(fsys.backing, fmt.Sprintf("%016x", id))
}

func (m *mfile) write(data []byte, off int64) error {
	op := fileOp{off: off, data: append([]byte(nil), data...), oldSize: m.size, undoOff: off}
	if off < m.size {
		op.undo = make([]byte, min(int64(len(data)), m.size-off))
		if _, err := m.f.ReadAt(op.undo, off); err != nil {
			return err
		}
	}
	if _, err := m.f.WriteAt(data, off); err != nil {
		return err
	}
	m.size = max(m.size, off+int64(len(data)))
	m.ops = append(m.ops, op)
	return nil
}

func (m *mfile) truncate(size int64) error {
	op := fileOp{truncate: true, off: size, oldSize: m.size, undoOff: size}
	if size < m.size {
		op.undo = make([]byte, m.size-size)
		if _, err := m.f.ReadAt(op.undo, size); err != nil {
			return err
		}
	}
	if err := m.f.Truncate(size); err != nil {
		return err
	}
	m.size = size
	m.ops = append(m.ops, op)
	return nil
}

// synced records a successful fsync: every pending op is durable.
func (m *mfile) synced() {
	if !m.doomed {
		m.ops = m.ops[:0]
		return
	}
	for i := range m.ops {
		if m.ops[i].state == opPending {
			m.ops[i].state = opSynced
		}
	}
}

// syncFailed records a failed fsync: the kernel may have dropped the dirty
// data it covered, so none of it may ever become durable.
func (m *mfile) syncFailed() {
	for i := range m.ops {
		if m.ops[i].state == opPending {
			m.ops[i].state = opDoomed
			m.doomed = true
		}
	}
}

func (d *mdir) set(name string, e entry) {
	d.live[name] = e
	d.ops = append(d.ops, dirOp{name: name, e: e})
}

func (d *mdir) remove(name string) {
	delete(d.live, name)
	d.ops = append(d.ops, dirOp{name: name, remove: true})
}

func (d *mdir) rename(from, to string) {
	e := d.live[from]
	delete(d.live, from)
	d.live[to] = e
	d.ops = append(d.ops, dirOp{name: to, e: e, from: from})
}

func (d *mdir) synced() {
	d.durable = make(map[string]entry, len(d.live))
	for k, v := range d.live {
		d.durable[k] = v
	}
	d.ops = d.ops[:0]
}

// --- the power cut ---

// CutReport says what one power cut kept and lost.
type CutReport struct {
	Seed   uint64
	Strict bool // everything pending was lost
	// Files with pending writes, by outcome.
	FilesAllLost, FilesPrefix, FilesAllKept, FilesTorn int
	PendingWritesKept, PendingWritesLost               int
	DoomedWritesLost                                   int
	DirOpsKept, DirOpsLost                             int
	TornZeroTail                                       int // torn appends whose lost part reads as zeros
	FilesVanished, DirsVanished                        int // reachable before, gone after
}

func (r CutReport) String() string {
	return fmt.Sprintf("seed=%d strict=%v files: %d all-lost %d prefix %d all-kept %d torn (%d zero-filled); writes kept %d lost %d (+%d doomed); dir ops kept %d lost %d; vanished %d files %d dirs",
		r.Seed, r.Strict, r.FilesAllLost, r.FilesPrefix, r.FilesAllKept, r.FilesTorn, r.TornZeroTail, r.PendingWritesKept, r.PendingWritesLost, r.DoomedWritesLost, r.DirOpsKept, r.DirOpsLost, r.FilesVanished, r.DirsVanished)
}

// Cut cuts the power: it freezes the file system (if Freeze has not), lets
// only durable state and one legal choice of the pending state survive
// (chosen by seed), unmounts, rewrites the backing store to that state and
// mounts it again. Kill every process using the mount between Freeze and
// Cut. After Cut, everything on the mount is durable.
func (fsys *FS) Cut(seed uint64) (CutReport, error) {
	fsys.Freeze()
	if err := fsys.unmount(); err != nil {
		return CutReport{Seed: seed}, err
	}
	fsys.mu.Lock()
	rep, err := fsys.cutLocked(seed)
	fsys.stats.Cuts++
	fsys.mu.Unlock()
	if err != nil {
		return rep, fmt.Errorf("lazyfs: power cut (seed %d): %w", seed, err)
	}
	if err := fsys.mount(); err != nil {
		return rep, err
	}
	return rep, nil
}

func (fsys *FS) cutLocked(seed uint64) (CutReport, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	rep := CutReport{Seed: seed, Strict: rng.IntN(4) == 0}
	before := fsys.reachable(func(d *mdir) map[string]entry { return d.live })

	// Directories: start from the durable entries, replay a choice of the
	// pending changes in order. Iterate by id so a seed replays exactly.
	for _, id := range sortedKeys(fsys.dirs) {
		d := fsys.dirs[id]
		next := make(map[string]entry, len(d.durable))
		for k, v := range d.durable {
			next[k] = v
		}
		for _, op := range d.ops {
			if rep.Strict || rng.IntN(2) == 0 {
				rep.DirOpsLost++
				continue
			}
			rep.DirOpsKept++
			if op.from != "" {
				if cur, ok := next[op.from]; ok && cur == op.e {
					delete(next, op.from)
				}
			}
			if op.remove {
				delete(next, op.name)
			} else {
				next[op.name] = op.e
			}
		}
		d.live = next
	}
	after := fsys.reachable(func(d *mdir) map[string]entry { return d.live })
	for id := range before.files {
		if !after.files[id] {
			rep.FilesVanished++
		}
	}
	for id := range before.dirs {
		if !after.dirs[id] {
			rep.DirsVanished++
		}
	}
	for _, id := range sortedKeys(fsys.dirs) {
		d := fsys.dirs[id]
		if !after.dirs[id] {
			delete(fsys.dirs, id)
			continue
		}
		d.synced()
	}
	// Files: rebuild the base, redo the synced ops, then a legal choice of
	// the pending ones.
	for _, id := range sortedKeys(fsys.files) {
		m := fsys.files[id]
		if !after.files[id] {
			m.f.Close()
			os.Remove(fsys.storePath(id))
			delete(fsys.files, id)
			continue
		}
		if err := fsys.settle(m, rng, &rep); err != nil {
			return rep, fmt.Errorf("file %s: %w", m.name, err)
		}
	}
	return rep, nil
}

// settle rewrites one file's content to a legal post-cut state.
func (fsys *FS) settle(m *mfile, rng *rand.Rand, rep *CutReport) error {
	if len(m.ops) == 0 {
		return nil
	}
	for i := len(m.ops) - 1; i >= 0; i-- {
		if err := m.undoOp(m.ops[i]); err != nil {
			return err
		}
	}
	var pending []fileOp
	for _, op := range m.ops {
		switch op.state {
		case opSynced:
			if err := m.redo(op, -1); err != nil {
				return err
			}
		case opDoomed:
			rep.DoomedWritesLost++
		case opPending:
			pending = append(pending, op)
		}
	}
	m.ops, m.doomed = nil, false
	n := len(pending)
	if n == 0 {
		return nil
	}
	keep, tear := 0, -1
	switch mode := rng.IntN(3); {
	case rep.Strict || mode == 0:
		rep.FilesAllLost++
	case mode == 1:
		keep = rng.IntN(n + 1)
		switch keep {
		case 0:
			rep.FilesAllLost++
		case n:
			rep.FilesAllKept++
		default:
			rep.FilesPrefix++
		}
	default:
		keep = rng.IntN(n)
		if op := pending[keep]; !op.truncate && len(op.data) > 0 {
			tear = rng.IntN(len(op.data))
		}
		rep.FilesTorn++
	}
	for i := 0; i < keep; i++ {
		if err := m.redo(pending[i], -1); err != nil {
			return err
		}
	}
	if tear >= 0 {
		op := pending[keep]
		if err := m.redo(op, tear); err != nil {
			return err
		}
		// The size may have reached the disk without the data: the rest of
		// an appending write reads as zeros (never over old bytes: only
		// past the current end).
		if end := op.off + int64(len(op.data)); rng.IntN(2) == 0 && end > m.size {
			if err := m.f.Truncate(end); err != nil {
				return err
			}
			m.size = end
			rep.TornZeroTail++
		}
	}
	rep.PendingWritesKept += keep
	rep.PendingWritesLost += n - keep
	return nil
}

func (m *mfile) undoOp(op fileOp) error {
	if op.oldSize > m.size {
		if err := m.f.Truncate(op.oldSize); err != nil {
			return err
		}
	}
	if len(op.undo) > 0 {
		if _, err := m.f.WriteAt(op.undo, op.undoOff); err != nil {
			return err
		}
	}
	if op.oldSize < m.size || op.oldSize < op.undoOff+int64(len(op.undo)) {
		if err := m.f.Truncate(op.oldSize); err != nil {
			return err
		}
	}
	m.size = op.oldSize
	return nil
}

// redo applies op again; a write with tear >= 0 only its first tear bytes.
func (m *mfile) redo(op fileOp, tear int) error {
	if op.truncate {
		if err := m.f.Truncate(op.off); err != nil {
			return err
		}
		m.size = op.off
		return nil
	}
	data := op.data
	if tear >= 0 {
		data = data[:tear]
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := m.f.WriteAt(data, op.off); err != nil {
		return err
	}
	m.size = max(m.size, op.off+int64(len(data)))
	return nil
}

type reach struct{ files, dirs map[uint64]bool }

func (fsys *FS) reachable(entries func(*mdir) map[string]entry) reach {
	r := reach{files: map[uint64]bool{}, dirs: map[uint64]bool{}}
	var walk func(d *mdir)
	walk = func(d *mdir) {
		if r.dirs[d.id] {
			return
		}
		r.dirs[d.id] = true
		for _, e := range entries(d) {
			if e.file != nil {
				r.files[e.file.id] = true
			} else {
				walk(e.dir)
			}
		}
	}
	walk(fsys.root)
	return r
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	return slices.Sorted(maps.Keys(m))
}

// errno turns an error of the backing store into an errno.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return fs.ToErrno(err)
}
