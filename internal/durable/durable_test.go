package durable

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/weaseldb/weaseldb/internal/lazyfs"
)

func mount(t *testing.T) *lazyfs.FS {
	t.Helper()
	if err := lazyfs.CanMount(); err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	dir := t.TempDir()
	fsys, err := lazyfs.Mount(filepath.Join(dir, "store"), filepath.Join(dir, "mnt"))
	if err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	t.Cleanup(func() { fsys.Close() })
	return fsys
}

// Regression test: the fake S3 store and the disk log created their
// directories with os.MkdirAll, and a power cut could take the directory
// with every fsynced object in it.
func TestMkdirAllSurvivesPowerCut(t *testing.T) {
	fsys := mount(t)
	for seed := range uint64(30) {
		dir := filepath.Join(fsys.Mountpoint(), "a", "b", "c")
		if err := MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := fsys.Cut(seed); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := os.RemoveAll(filepath.Join(fsys.Mountpoint(), "a")); err != nil {
			t.Fatal(err)
		}
		if err := SyncDir(fsys.Mountpoint()); err != nil {
			t.Fatal(err)
		}
	}
}

// And the test sees the difference: plain os.MkdirAll loses it sometimes.
func TestOSMkdirAllCanVanish(t *testing.T) {
	fsys := mount(t)
	vanished := 0
	for seed := range uint64(30) {
		dir := filepath.Join(fsys.Mountpoint(), "a", "b")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := fsys.Cut(seed); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); err != nil {
			vanished++
		}
		os.RemoveAll(filepath.Join(fsys.Mountpoint(), "a"))
		SyncDir(fsys.Mountpoint())
	}
	if vanished == 0 {
		t.Fatal("os.MkdirAll never lost a directory over 30 cuts: the power cut does not test anything")
	}
}
