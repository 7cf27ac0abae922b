package conflict

import (
	"encoding/binary"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

// TestForgetThroughGivesMemoryBack: the engine's memory bound relies on
// ForgetThrough returning memory at once (issue 12, item 9): 100,000 unique
// 1 KiB keys, then forgetting the older half, must leave about half the
// bytes, and reads keep their answers above the new oldest version.
func TestForgetThroughGivesMemoryBack(t *testing.T) {
	s := New(0)
	key := make([]byte, 1024)
	const n = 100_000
	for v := tx.Version(1); v <= n; v++ {
		binary.BigEndian.PutUint64(key, uint64(v))
		s.AddWrites([]Write{{Begin: key}}, v)
	}
	full := s.Bytes()
	if full < n*1024 {
		t.Fatalf("set of %d 1 KiB keys holds %d bytes", n, full)
	}
	s.ForgetThrough(n / 2)
	if err := s.verify(); err != nil {
		t.Fatal(err)
	}
	half := s.Bytes()
	if half > full*3/4 || s.Len() > n/2+1 {
		t.Fatalf("after forgetting half: %d bytes (was %d), %d keys", half, full, s.Len())
	}
	binary.BigEndian.PutUint64(key, n)
	res := s.Check([]Read{{Begin: key, Version: n/2 - 1}, {Begin: key, Version: n - 1}, {Begin: key, Version: n}}, nil)
	if res[0] != TooOld || res[1] != Conflict || res[2] != Commit {
		t.Fatalf("reads after ForgetThrough: %v, want [too_old conflict commit]", res)
	}
	s.ForgetThrough(n)
	if s.Len() != 0 || s.Bytes() > full/8 {
		t.Fatalf("after forgetting everything: %d keys, %d bytes", s.Len(), s.Bytes())
	}
}
