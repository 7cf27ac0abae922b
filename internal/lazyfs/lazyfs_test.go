package lazyfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mount mounts a fresh lazy file system for one test, or skips the test
// where FUSE cannot mount. The unmount is registered after the temporary
// directories, so it runs first.
func mount(t *testing.T) *FS {
	t.Helper()
	if err := CanMount(); err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	dir := t.TempDir()
	fsys, err := Mount(filepath.Join(dir, "store"), filepath.Join(dir, "mnt"))
	if err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	t.Cleanup(func() {
		if err := fsys.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return fsys
}

func (fsys *FS) path(name string) string { return filepath.Join(fsys.Mountpoint(), name) }

// writeFile creates name with data; with sync it fsyncs the file.
func writeFile(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func appendFile(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if _, err := f.WriteAt(data, st.Size()); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func cut(t *testing.T, fsys *FS, seed uint64) CutReport {
	t.Helper()
	rep, err := fsys.Cut(seed)
	if err != nil {
		t.Fatalf("cut %d: %v", seed, err)
	}
	return rep
}

func readFile(t *testing.T, path string) ([]byte, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

const seeds = 40

func TestSyncedSurvivesEveryCut(t *testing.T) {
	fsys := mount(t)
	if err := os.Mkdir(fsys.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	syncDir(t, fsys.Mountpoint())
	want := bytes.Repeat([]byte("durable "), 1000)
	writeFile(t, fsys.path("d/f"), want, true)
	syncDir(t, fsys.path("d"))
	for seed := range uint64(seeds) {
		cut(t, fsys, seed)
		got, ok := readFile(t, fsys.path("d/f"))
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("seed %d: synced file present %v, %d bytes, want %d", seed, ok, len(got), len(want))
		}
	}
}

func TestUnsyncedWriteCanBeLostOrTorn(t *testing.T) {
	fsys := mount(t)
	base := []byte("base")
	writeFile(t, fsys.path("f"), base, true)
	syncDir(t, fsys.Mountpoint())
	extra := bytes.Repeat([]byte("x"), 1000)
	var lost, kept, torn, zeroed int
	for seed := range uint64(seeds) {
		appendFile(t, fsys.path("f"), extra, false)
		rep := cut(t, fsys, seed)
		got, ok := readFile(t, fsys.path("f"))
		if !ok || !bytes.HasPrefix(got, base) {
			t.Fatalf("seed %d: the synced prefix is gone: present %v, %q (%s)", seed, ok, got[:min(len(got), 10)], rep)
		}
		tail := got[len(base):]
		// What survived of the write: a prefix of it, then perhaps zeros
		// (a torn append whose size reached the disk before its data).
		k := 0
		for k < len(tail) && k < len(extra) && tail[k] == extra[k] {
			k++
		}
		if len(tail) > len(extra) || !bytes.Equal(tail[k:], make([]byte, len(tail)-k)) {
			t.Fatalf("seed %d: %d bytes after the synced prefix: not a prefix of the write followed by zeros (%s)", seed, len(tail), rep)
		}
		switch {
		case len(tail) == 0:
			lost++
		case k == len(extra):
			kept++
		case k < len(tail):
			zeroed++
			torn++
		default:
			torn++
		}
		writeFile(t, fsys.path("f"), base, true) // reset (durable: synced)
	}
	if lost == 0 || kept == 0 || torn == 0 || zeroed == 0 {
		t.Fatalf("over %d cuts an unsynced write was lost %d, kept %d, torn %d (%d with a zero tail) times: want each outcome", seeds, lost, kept, torn, zeroed)
	}
}

func TestUnsyncedCreateCanVanish(t *testing.T) {
	fsys := mount(t)
	var vanished, stayed int
	for seed := range uint64(seeds) {
		name := fsys.path("new")
		writeFile(t, name, []byte("synced data"), true) // the file, not its directory
		cut(t, fsys, seed)
		if got, ok := readFile(t, name); ok {
			if string(got) != "synced data" {
				t.Fatalf("seed %d: %q", seed, got)
			}
			stayed++
			os.Remove(name)
			syncDir(t, fsys.Mountpoint())
		} else {
			vanished++
		}
	}
	if vanished == 0 || stayed == 0 {
		t.Fatalf("a create without a directory fsync vanished %d, stayed %d times: want both", vanished, stayed)
	}
}

func TestCreateWithDirSyncSurvives(t *testing.T) {
	fsys := mount(t)
	for seed := range uint64(seeds) {
		name := fsys.path("new")
		writeFile(t, name, []byte("synced data"), true)
		syncDir(t, fsys.Mountpoint())
		cut(t, fsys, seed)
		if got, ok := readFile(t, name); !ok || string(got) != "synced data" {
			t.Fatalf("seed %d: present %v %q", seed, ok, got)
		}
		os.Remove(name)
		syncDir(t, fsys.Mountpoint())
	}
}

func TestRenameWithoutDirSyncCanRevert(t *testing.T) {
	fsys := mount(t)
	writeFile(t, fsys.path("final"), []byte("old"), true)
	syncDir(t, fsys.Mountpoint())
	var reverted, done int
	for seed := range uint64(seeds) {
		writeFile(t, fsys.path("tmp"), []byte("new"), true)
		syncDir(t, fsys.Mountpoint())
		if err := os.Rename(fsys.path("tmp"), fsys.path("final")); err != nil {
			t.Fatal(err)
		}
		cut(t, fsys, seed)
		final, ok := readFile(t, fsys.path("final"))
		if !ok {
			t.Fatalf("seed %d: final is gone: a rename is atomic", seed)
		}
		tmp, tmpOK := readFile(t, fsys.path("tmp"))
		switch {
		case string(final) == "old" && tmpOK && string(tmp) == "new":
			reverted++
		case string(final) == "new" && !tmpOK:
			done++
		default:
			t.Fatalf("seed %d: final %q, tmp %v %q: neither before nor after the rename", seed, final, tmpOK, tmp)
		}
		// Back to "old", durably.
		os.Remove(fsys.path("tmp"))
		writeFile(t, fsys.path("final"), []byte("old"), true)
		syncDir(t, fsys.Mountpoint())
	}
	if reverted == 0 || done == 0 {
		t.Fatalf("a rename without a directory fsync reverted %d, stayed %d times: want both", reverted, done)
	}
}

func TestUnlinkWithoutDirSyncCanRevert(t *testing.T) {
	fsys := mount(t)
	var back, gone int
	for seed := range uint64(seeds) {
		writeFile(t, fsys.path("f"), []byte("data"), true)
		syncDir(t, fsys.Mountpoint())
		if err := os.Remove(fsys.path("f")); err != nil {
			t.Fatal(err)
		}
		cut(t, fsys, seed)
		if got, ok := readFile(t, fsys.path("f")); ok {
			if string(got) != "data" {
				t.Fatalf("seed %d: an unlinked file came back as %q", seed, got)
			}
			back++
		} else {
			gone++
		}
	}
	if back == 0 || gone == 0 {
		t.Fatalf("an unsynced unlink reverted %d, stayed %d times: want both", back, gone)
	}
}

// fsyncgate: after a failed fsync the data it covered is never durable,
// even when a later fsync on the same file succeeds.
func TestFailedFsyncIsNeverDurable(t *testing.T) {
	fsys := mount(t)
	writeFile(t, fsys.path("f"), []byte("base"), true)
	syncDir(t, fsys.Mountpoint())
	for seed := range uint64(seeds) {
		fsys.InjectFault(Fault{Op: FaultFsync, Name: "f", Errno: syscall.EIO, Count: 1})
		f, err := os.OpenFile(fsys.path("f"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("LOST"), 4); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("fsync: %v, want EIO", err)
		}
		if err := f.Sync(); err != nil { // the retry "succeeds"
			t.Fatalf("second fsync: %v", err)
		}
		// The data stays readable until the cut, as in the page cache.
		if got, _ := readFile(t, fsys.path("f")); string(got) != "baseLOST" {
			t.Fatalf("before the cut: %q", got)
		}
		f.Close()
		fsys.ClearFaults()
		rep := cut(t, fsys, seed)
		if got, _ := readFile(t, fsys.path("f")); string(got) != "base" {
			t.Fatalf("seed %d: after a failed fsync and a successful retry, the cut kept %q (%s)", seed, got, rep)
		}
	}
}

func TestWriteFault(t *testing.T) {
	fsys := mount(t)
	fsys.InjectFault(Fault{Op: FaultWrite, Name: "full", Errno: syscall.ENOSPC})
	f, err := os.Create(fsys.path("full"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write: %v, want ENOSPC", err)
	}
	writeFile(t, fsys.path("other"), []byte("fine"), true)
	if got := fsys.Stats().FaultsHit; got != 1 {
		t.Fatalf("faults hit %d, want 1", got)
	}
}

func TestFrozenFailsEverything(t *testing.T) {
	fsys := mount(t)
	writeFile(t, fsys.path("f"), []byte("x"), true)
	f, err := os.OpenFile(fsys.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys.Freeze()
	if _, err := f.WriteAt([]byte("y"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write while frozen: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync while frozen: %v, want EIO", err)
	}
}

// A seed replays: the same operations and the same seed give the same
// surviving state.
func TestSeedReplays(t *testing.T) {
	run := func() []byte {
		fsys := mount(t)
		writeFile(t, fsys.path("f"), []byte("0123456789"), true)
		syncDir(t, fsys.Mountpoint())
		for i := range 20 {
			appendFile(t, fsys.path("f"), bytes.Repeat([]byte{byte('a' + i)}, 100), false)
		}
		cut(t, fsys, 12345)
		got, _ := readFile(t, fsys.path("f"))
		return got
	}
	a, b := run(), run()
	if !bytes.Equal(a, b) {
		t.Fatalf("same seed, different outcomes: %d vs %d bytes", len(a), len(b))
	}
}

// A mount still in use (a descriptor left open) cannot hang Close: it
// detaches the mount and aborts the FUSE connection.
func TestCloseNeverHangs(t *testing.T) {
	defer func(d time.Duration) { unmountTimeout = d }(unmountTimeout)
	unmountTimeout = 500 * time.Millisecond
	fsys := mount(t)
	writeFile(t, fsys.path("f"), []byte("x"), true)
	f, err := os.Open(fsys.path("f")) // held open across Close
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- fsys.Close() }()
	select {
	case err := <-done:
		if err != nil {
			// Bounded is what matters; the abort needs fusectl, which a
			// sandbox may not let us mount.
			t.Logf("Close with a file held open: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close hangs while a file on the mount is held open")
	}
}
