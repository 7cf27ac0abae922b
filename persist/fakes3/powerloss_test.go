package fakes3

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weaseldb/weaseldb/internal/lazyfs"
)

// Regression test: a DeleteObjects of keys oldest first must never leave a
// later key deleted and an earlier one present after a power cut (s3log's
// truncation relies on it: a hole in the middle of the log makes recovery
// discard everything after it). The store synced the directory once after
// all removals, so any subset of them could survive a cut; now each removal
// is durable before the next. Found by tests/powerloss (--persist s3).
func TestDeleteObjectsPowerCutLeavesAPrefix(t *testing.T) {
	if err := lazyfs.CanMount(); err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	tmp := t.TempDir()
	fsys, err := lazyfs.Mount(filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"))
	if err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	t.Cleanup(func() { fsys.Close() })
	dir := filepath.Join(fsys.Mountpoint(), "s3")
	const n = 10
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("log/%04d", i)
	}
	for seed := range uint64(20) {
		s, err := openStore(dir, uploadsMaxDefault, uploadBytesMaxDefault)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.createBucket("bkt"); err != nil && err != errBucketExists {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := s.put("bkt", &object{key: k, data: []byte(k)}, putCondition{}); err != nil {
				t.Fatal(err)
			}
		}
		// The power goes at the 7th removal.
		fsys.InjectFault(lazyfs.Fault{Op: lazyfs.FaultUnlink, Skip: 6, Count: 1, Freeze: true})
		if err := s.remove("bkt", keys...); err == nil {
			t.Fatal("remove succeeded through a power cut")
		}
		fsys.ClearFaults()
		if _, err := fsys.Cut(seed); err != nil {
			t.Fatal(err)
		}
		s, err = openStore(dir, uploadsMaxDefault, uploadBytesMaxDefault)
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		var left []string
		if err := s.ascend("bkt", "", true, func(o *object) bool { left = append(left, o.key); return true }); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// What is left must be a suffix of keys, and the first six are gone.
		if len(left) > n-6 || !slices.Equal(left, keys[n-len(left):]) {
			t.Fatalf("seed %d: after a cut mid-way through deleting %v oldest first, %v are left: not a suffix holding at most the last %d", seed, keys, left, n-6)
		}
	}
}
