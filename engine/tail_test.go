package engine

import (
	"errors"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

func TestTailReadContract(t *testing.T) {
	tail := newTail(100)
	tail.reset(10)
	seg := func(n int) []byte { return make([]byte, n) }
	segs, wait, err := tail.Read(10, true, nil)
	if err != nil || len(segs) != 0 {
		t.Fatalf("empty tail: %d segs, %v", len(segs), err)
	}
	tail.publish(11, 12, seg(40))
	select {
	case <-wait:
	default:
		t.Fatal("wait not closed by publish")
	}
	if segs, _, _ = tail.Read(10, true, nil); len(segs) != 0 {
		t.Fatal("durable reader saw a segment that is not durable")
	}
	if segs, _, _ = tail.Read(10, false, nil); len(segs) != 1 {
		t.Fatalf("durable=false reader: %d segs", len(segs))
	}
	tail.markDurable(12)
	tail.publish(13, 15, seg(40))
	if segs, _, _ = tail.Read(11, true, nil); len(segs) != 1 || len(segs[0]) != 40 {
		t.Fatalf("after 11: %d segs (the first holds 12, whole)", len(segs))
	}
	tail.markDurable(15)
	tail.publish(16, 16, seg(40)) // 120 bytes > 100: evicts [11,12]
	if _, _, err = tail.Read(10, true, nil); !errors.Is(err, ErrBehindTail) {
		t.Fatalf("after eviction: %v", err)
	}
	if segs, _, err = tail.Read(12, false, nil); err != nil || len(segs) != 2 {
		t.Fatalf("after 12: %d segs, %v", len(segs), err)
	}
	if segs, _, err = tail.Read(16, false, nil); err != nil || len(segs) != 0 {
		t.Fatalf("caught up: %d segs, %v", len(segs), err)
	}
	if n, b := tail.size(); n != 2 || b != 80 {
		t.Fatalf("size %d segs %d bytes", n, b)
	}
	tail.fail(ErrClosed)
	if _, _, err = tail.Read(12, true, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after fail: %v", err)
	}
	if tail.Durable() != tx.Version(15) {
		t.Fatalf("durable %d", tail.Durable())
	}
}
