package disk

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

// smallExt4 mounts a fresh 8 MiB ext4 file system (a loop device) and
// returns its mount point, or skips: it needs root, mkfs.ext4 and a loop
// device. tmpfs does not do: it undoes a failed fallocate by itself.
func smallExt4(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small ext4 file system")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("needs mkfs.ext4")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an ext4 image here: %v %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// A 64 MiB preallocation fails on an 8 MiB file system, but ext4 keeps
// the part it reserved: the log must give it back (issue 12, item 16).
func TestFailedPreallocationReleased(t *testing.T) {
	mnt := smallExt4(t)
	dir := filepath.Join(mnt, "log")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	free := freeBytes(t, mnt)
	l, _ := recovered(t, dir, Options{}) // DefaultMaxFileBytes: 64 MiB
	appendAll(t, l, logtest.Segment(0, 0, "p"), logtest.Segment(1, 3, "p"))
	after := freeBytes(t, mnt)
	if after < free/2 {
		t.Fatalf("after the first roll %d of %d free bytes are left: the failed preallocation kept its partial reservation", after, free)
	}
	// The rest of the file system is usable: the policies file, more
	// appends.
	if err := l.StorePolicies(context.Background(), map[string]tx.Version{"p": 1}); err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, logtest.Segment(4, 6, "p"))
}
