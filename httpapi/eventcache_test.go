package httpapi

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// testSegment encodes n transactions from first on, each with one write.
func testSegment(first tx.Version, n int) []byte {
	txns := make([]tx.Transaction, n)
	for i := range txns {
		v := first + tx.Version(i)
		txns[i] = tx.Transaction{
			Version:           v,
			RequestID:         []byte(fmt.Sprintf("request-%020d", v)),
			TimestampUnixNano: 1_700_000_000_000_000_000 + int64(v),
			Operations: []tx.Operation{{Type: tx.OpWrite,
				Key: []byte(fmt.Sprintf("key-%012d", v)), Value: bytes.Repeat([]byte{'v'}, 100)}},
		}
	}
	return persist.EncodeSegment(nil, []byte("0123456789abcdef0123456789abcdef"), txns)
}

// perSubscriberEvents is the straightforward encoding every subscriber would
// otherwise do: the baseline the cache must match byte for byte.
func perSubscriberEvents(t testing.TB, seg []byte, after tx.Version) []byte {
	var r persist.SegmentReader
	hdr, err := r.Reset(seg)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	prev := after
	for txn, ok := r.Next(); ok; txn, ok = r.Next() {
		if txn.Version <= after {
			continue
		}
		out = appendEvent(out, txn, prev, hdr.LeaderID)
		prev = txn.Version
	}
	return out
}

func TestEventCacheMatchesPerSubscriberEncoding(t *testing.T) {
	c := newEventCache(1 << 20)
	seg := testSegment(10, 5)
	e, err := c.get(seg)
	if err != nil {
		t.Fatal(err)
	}
	// A stream reaches a segment with its cursor at First-1 or later (a lower
	// cursor would be a gap, refused by sendSegment).
	for after := tx.Version(9); after <= 16; after++ {
		if got, want := e.after(after), perSubscriberEvents(t, seg, after); !bytes.Equal(got, want) {
			t.Fatalf("after %d:\n got %q\nwant %q", after, got, want)
		}
	}
	again, _ := c.get(seg)
	if again != e {
		t.Fatal("second get encoded again instead of sharing")
	}
}

func TestEventCacheEvictsByBytes(t *testing.T) {
	c := newEventCache(4 << 10)
	for i := range 50 {
		if _, err := c.get(testSegment(tx.Version(1+10*i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes > 4<<10+4<<10 || len(c.entries) != len(c.order) || len(c.entries) == 0 {
		t.Fatalf("cache holds %d bytes in %d entries (order %d): not bounded", c.bytes, len(c.entries), len(c.order))
	}
	if _, ok := c.entries[1]; ok {
		t.Fatal("oldest entry not evicted")
	}
}

func TestEventCacheRejectsCorruptSegment(t *testing.T) {
	seg := testSegment(1, 3)
	seg[len(seg)-1] ^= 0xff
	if _, err := newEventCache(1 << 20).get(seg); err == nil {
		t.Fatal("corrupt segment accepted")
	}
}

// BenchmarkSubscriberFanout measures the SSE cost of one 100-transaction
// segment delivered to 100 unfiltered subscribers: shared (encoded once by
// the cache, then copied per subscriber) against per_subscriber (each
// subscriber decodes and encodes it itself, the baseline).
//
//	go test -run '^$' -bench SubscriberFanout -benchmem ./httpapi/
func BenchmarkSubscriberFanout(b *testing.B) {
	const subscribers = 100
	seg := testSegment(1, 100)
	out := make([]byte, 0, 64<<10)
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c := newEventCache(32 << 20) // a fresh segment every round
			for range subscribers {
				e, err := c.get(seg)
				if err != nil {
					b.Fatal(err)
				}
				out = append(out[:0], e.after(0)...)
			}
		}
	})
	b.Run("per_subscriber", func(b *testing.B) {
		b.ReportAllocs()
		var r persist.SegmentReader
		for b.Loop() {
			for range subscribers {
				hdr, err := r.Reset(seg)
				if err != nil {
					b.Fatal(err)
				}
				out = out[:0]
				for txn, ok := r.Next(); ok; txn, ok = r.Next() {
					out = appendEvent(out, txn, txn.Version-1, hdr.LeaderID)
				}
			}
		}
	})
}
