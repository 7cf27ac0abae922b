package lazyfs

import (
	"context"
	"slices"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The FUSE side: nodes are thin views of the model (mdir, mfile); every
// operation takes fsys.mu, fails with EIO while frozen, and records what it
// changed.

type dirNode struct {
	fs.Inode
	fsys *FS
	m    *mdir
}

type fileNode struct {
	fs.Inode
	fsys *FS
	m    *mfile
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeSetattrer = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeFsyncer   = (*dirNode)(nil)
	_ fs.NodeStatfser  = (*dirNode)(nil)

	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
	_ fs.NodeFsyncer   = (*fileNode)(nil)
	_ fs.NodeFlusher   = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeAllocater = (*fileNode)(nil)
)

// lock takes the big lock; it reports false (and releases it) while the
// power is off.
func (fsys *FS) lock() bool {
	fsys.mu.Lock()
	if fsys.frozen {
		fsys.mu.Unlock()
		return false
	}
	return true
}

func (n *dirNode) child(ctx context.Context, e entry, out *fuse.EntryOut) *fs.Inode {
	if e.file != nil {
		fillFileAttr(e.file, &out.Attr)
		return n.NewInode(ctx, &fileNode{fsys: n.fsys, m: e.file}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: e.file.id})
	}
	fillDirAttr(e.dir, &out.Attr)
	return n.NewInode(ctx, &dirNode{fsys: n.fsys, m: e.dir}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: e.dir.id})
}

func fillFileAttr(m *mfile, a *fuse.Attr) {
	a.Ino = m.id
	a.Mode = syscall.S_IFREG | m.mode
	a.Size = uint64(m.size)
	a.Blocks = (a.Size + 511) / 512
	a.Nlink = 1
	a.Blksize = 4096
}

func fillDirAttr(d *mdir, a *fuse.Attr) {
	a.Ino = d.id
	a.Mode = syscall.S_IFDIR | d.mode
	a.Nlink = 2
	a.Blksize = 4096
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.fsys.lock() {
		return nil, errFrozen
	}
	defer n.fsys.mu.Unlock()
	e, ok := n.m.live[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	return n.child(ctx, e, out), 0
}

func (n *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !n.fsys.lock() {
		return nil, errFrozen
	}
	defer n.fsys.mu.Unlock()
	names := make([]string, 0, len(n.m.live))
	for name := range n.m.live {
		names = append(names, name)
	}
	slices.Sort(names)
	list := make([]fuse.DirEntry, 0, len(names))
	for _, name := range names {
		e := n.m.live[name]
		if e.file != nil {
			list = append(list, fuse.DirEntry{Name: name, Ino: e.file.id, Mode: syscall.S_IFREG})
		} else {
			list = append(list, fuse.DirEntry{Name: name, Ino: e.dir.id, Mode: syscall.S_IFDIR})
		}
	}
	return fs.NewListDirStream(list), 0
}

func (n *dirNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	fillDirAttr(n.m, &out.Attr)
	return 0
}

func (n *dirNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	if mode, ok := in.GetMode(); ok {
		n.m.mode = mode & 0o7777
	}
	fillDirAttr(n.m, &out.Attr)
	return 0
}

func (n *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.fsys.lock() {
		return nil, nil, 0, errFrozen
	}
	defer n.fsys.mu.Unlock()
	if _, ok := n.m.live[name]; ok {
		return nil, nil, 0, syscall.EEXIST
	}
	m, err := n.fsys.newFileLocked(name, mode)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	e := entry{file: m}
	n.m.set(name, e)
	return n.child(ctx, e, out), nil, 0, 0
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.fsys.lock() {
		return nil, errFrozen
	}
	defer n.fsys.mu.Unlock()
	if _, ok := n.m.live[name]; ok {
		return nil, syscall.EEXIST
	}
	e := entry{dir: n.fsys.newDirLocked(name, mode)}
	n.m.set(name, e)
	return n.child(ctx, e, out), 0
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	e, ok := n.m.live[name]
	if !ok {
		return syscall.ENOENT
	}
	if e.dir != nil {
		return syscall.EISDIR
	}
	if e := n.fsys.faultLocked(FaultUnlink, name); e != 0 {
		return e
	}
	// The backing file stays until the cut: the unlink may not survive it.
	n.m.remove(name)
	return 0
}

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	e, ok := n.m.live[name]
	if !ok {
		return syscall.ENOENT
	}
	if e.dir == nil {
		return syscall.ENOTDIR
	}
	if len(e.dir.live) > 0 {
		return syscall.ENOTEMPTY
	}
	n.m.remove(name)
	return 0
}

func (n *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	if flags&^uint32(renameNoReplace) != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT: not needed
	}
	e, ok := n.m.live[name]
	if !ok {
		return syscall.ENOENT
	}
	if old, exists := to.m.live[newName]; exists {
		if flags&renameNoReplace != 0 {
			return syscall.EEXIST
		}
		switch {
		case old == e:
			return 0
		case old.dir != nil && e.dir == nil:
			return syscall.EISDIR
		case old.dir == nil && e.dir != nil:
			return syscall.ENOTDIR
		case old.dir != nil && len(old.dir.live) > 0:
			return syscall.ENOTEMPTY
		}
	}
	if e.file != nil {
		e.file.name = newName
	} else {
		e.dir.name = newName
	}
	if to.m == n.m {
		n.m.rename(name, newName)
		return 0
	}
	// Across directories: two independent changes, each durable with its
	// own directory's fsync.
	n.m.remove(name)
	to.m.set(newName, e)
	return 0
}

// Fsync of a directory makes its entries durable.
func (n *dirNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	n.fsys.stats.DirFsyncs++
	if e := n.fsys.faultLocked(FaultDirFsync, n.m.name); e != 0 {
		return e // the changes stay pending
	}
	n.m.synced()
	return 0
}

func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fsys.backing, &st); err != nil {
		return errno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.fsys.lock() {
		return nil, 0, errFrozen
	}
	defer n.fsys.mu.Unlock()
	if flags&syscall.O_TRUNC != 0 && n.m.size > 0 {
		if err := n.m.truncate(0); err != nil {
			return nil, 0, errno(err)
		}
	}
	// DIRECT_IO: every read and write reaches the model (no page cache
	// between the server and the power cut).
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (n *fileNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !n.fsys.lock() {
		return nil, errFrozen
	}
	defer n.fsys.mu.Unlock()
	if off >= n.m.size {
		return fuse.ReadResultData(nil), 0
	}
	buf := dest[:min(int64(len(dest)), n.m.size-off)]
	k, err := n.m.f.ReadAt(buf, off)
	if err != nil && k < len(buf) {
		return nil, errno(err)
	}
	return fuse.ReadResultData(buf[:k]), 0
}

func (n *fileNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if !n.fsys.lock() {
		return 0, errFrozen
	}
	defer n.fsys.mu.Unlock()
	if e := n.fsys.faultLocked(FaultWrite, n.m.name); e != 0 {
		return 0, e
	}
	n.fsys.stats.Writes++
	if err := n.m.write(data, off); err != nil {
		return 0, errno(err)
	}
	return uint32(len(data)), 0
}

// Fsync (and fdatasync: both make data and size durable here) of a file.
func (n *fileNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	n.fsys.stats.Fsyncs++
	if e := n.fsys.faultLocked(FaultFsync, n.m.name); e != 0 {
		if !n.fsys.frozen { // a failed fsync, not the power going at it
			n.m.syncFailed()
		}
		return e
	}
	n.m.synced()
	return 0
}

func (n *fileNode) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }

func (n *fileNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	fillFileAttr(n.m, &out.Attr)
	return 0
}

func (n *fileNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	if mode, ok := in.GetMode(); ok {
		n.m.mode = mode & 0o7777
	}
	if size, ok := in.GetSize(); ok && int64(size) != n.m.size {
		if err := n.m.truncate(int64(size)); err != nil {
			return errno(err)
		}
	}
	fillFileAttr(n.m, &out.Attr)
	return 0
}

// Allocate accepts fallocate: with KEEP_SIZE it changes nothing visible;
// otherwise it extends the file like a truncation up.
func (n *fileNode) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	if !n.fsys.lock() {
		return errFrozen
	}
	defer n.fsys.mu.Unlock()
	const keepSize = 1 // FALLOC_FL_KEEP_SIZE
	if mode&keepSize != 0 {
		return 0
	}
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	if end := int64(off + size); end > n.m.size {
		if err := n.m.truncate(end); err != nil {
			return errno(err)
		}
	}
	return 0
}

const renameNoReplace = 1 // RENAME_NOREPLACE
