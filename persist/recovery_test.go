package persist

import (
	"errors"
	"fmt"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

func stored(first, last tx.Version) StoredSegment {
	count := uint32(last - first + 1)
	if first == 0 {
		count = 0
	}
	return StoredSegment{First: first, Bytes: 100, Header: SegmentHeader{First: first, Last: last, Count: count}}
}

// by returns s as written by leader id.
func by(id string, s StoredSegment) StoredSegment {
	s.Header.LeaderID = []byte(id)
	return s
}

func corrupt(first tx.Version) StoredSegment {
	return StoredSegment{First: first, Bytes: 7, Err: fmt.Errorf("%w: test", ErrCorruption)}
}

func TestPlanRecovery(t *testing.T) {
	misnamed := stored(11, 20)
	misnamed.First = 12
	cases := []struct {
		name      string
		in        []StoredSegment
		run       string
		discarded string
		corrupt   bool
	}{
		{name: "empty", run: "[]", discarded: "[]"},
		{name: "genesis", in: []StoredSegment{stored(0, 0)}, run: "[0-0]", discarded: "[]"},
		{name: "contiguous", in: []StoredSegment{stored(0, 0), stored(1, 5), stored(6, 6)}, run: "[0-0 1-5 6-6]", discarded: "[]"},
		{name: "truncated start", in: []StoredSegment{stored(40, 50), stored(51, 60)}, run: "[40-50 51-60]", discarded: "[]"},
		{name: "gap", in: []StoredSegment{stored(1, 5), stored(7, 9), stored(10, 12)}, run: "[1-5]", discarded: "[7-9 10-12]"},
		{name: "overlap", in: []StoredSegment{stored(1, 5), stored(5, 9)}, run: "[1-5]", discarded: "[5-9]"},
		// A deposed leader's orphan inside the new leader's run (tests/s3fault).
		{name: "orphan inside the run", in: []StoredSegment{stored(1, 5), stored(3, 4), stored(4, 8), stored(6, 9), stored(10, 10)}, run: "[1-5 6-9 10-10]", discarded: "[3-4 4-8]"},
		{name: "corrupt orphan inside the run", in: []StoredSegment{stored(1, 5), corrupt(3), stored(6, 9)}, run: "[1-5 6-9]", discarded: "[3-3]"},
		// Leader terms: X, then Y's claim and segments; an orphan of X that
		// fits exactly at one of Y's boundaries is not taken (nor anything
		// after it), while new terms (Z) may follow.
		{name: "leader terms in order", in: []StoredSegment{by("x", stored(1, 5)), by("y", stored(6, 6)), by("y", stored(7, 9)), by("z", stored(10, 10))}, run: "[1-5 6-6 7-9 10-10]", discarded: "[]"},
		{name: "earlier leader returns", in: []StoredSegment{by("x", stored(1, 5)), by("y", stored(6, 6)), by("y", stored(7, 9)), by("x", stored(10, 12)), by("y", stored(13, 14))}, run: "[1-5 6-6 7-9]", discarded: "[10-12 13-14]"},
		{name: "torn tail", in: []StoredSegment{stored(1, 5), corrupt(6)}, run: "[1-5]", discarded: "[6-6]"},
		{name: "only segment torn", in: []StoredSegment{corrupt(1)}, run: "[]", discarded: "[1-1]"},
		{name: "corrupt after gap", in: []StoredSegment{stored(1, 5), corrupt(9), stored(10, 11)}, run: "[1-5]", discarded: "[9-9 10-11]"},
		{name: "corrupt middle", in: []StoredSegment{stored(1, 5), corrupt(6), stored(7, 9)}, corrupt: true},
		{name: "corrupt oldest", in: []StoredSegment{corrupt(1), stored(7, 9)}, corrupt: true},
		{name: "misnamed middle", in: []StoredSegment{stored(1, 11), misnamed, stored(21, 22)}, corrupt: true},
	}
	for _, c := range cases {
		rec, err := PlanRecovery(c.in)
		if c.corrupt {
			if !errors.Is(err, ErrCorruption) {
				t.Errorf("%s: err %v, want ErrCorruption", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := ranges(rec.Segments); got != c.run {
			t.Errorf("%s: run %s, want %s", c.name, got, c.run)
		}
		if got := ranges(rec.Discarded); got != c.discarded {
			t.Errorf("%s: discarded %s, want %s", c.name, got, c.discarded)
		}
	}
	if _, err := PlanRecovery([]StoredSegment{stored(6, 7), stored(1, 5)}); err == nil {
		t.Error("unsorted input accepted")
	}
}

func ranges(s []SegmentInfo) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%d-%d", x.First, x.Last)
	}
	return out + "]"
}

func TestSelectReadFrom(t *testing.T) {
	segs := []SegmentInfo{{First: 11, Last: 20, Bytes: 100}, {First: 21, Last: 25, Bytes: 100}, {First: 26, Last: 40, Bytes: 100}, {First: 50, Last: 60, Bytes: 100}}
	cases := []struct {
		after    tx.Version
		maxBytes int
		want     string
		notFound bool
	}{
		{after: 10, maxBytes: 1000, want: "[11-20 21-25 26-40]"}, // stops at the gap before 50
		{after: 9, maxBytes: 1000, notFound: true},
		{after: 0, maxBytes: 1000, notFound: true},
		{after: 15, maxBytes: 1000, want: "[11-20 21-25 26-40]"},
		{after: 20, maxBytes: 200, want: "[21-25 26-40]"},
		{after: 20, maxBytes: 199, want: "[21-25]"},
		{after: 20, maxBytes: 1, want: "[21-25]"}, // at least one
		{after: 20, maxBytes: 0, want: "[21-25]"},
		{after: 40, maxBytes: 1000, want: "[]"}, // 41 is not stored (yet)
		{after: 49, maxBytes: 1000, want: "[50-60]"},
		{after: 60, maxBytes: 1000, want: "[]"},
		{after: 99, maxBytes: 1000, want: "[]"},
	}
	for _, c := range cases {
		got, err := SelectReadFrom(segs, c.after, c.maxBytes)
		if c.notFound {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("after %d: err %v, want ErrNotFound", c.after, err)
			}
			continue
		}
		if err != nil || ranges(got) != c.want {
			t.Errorf("after %d max %d: %s, %v; want %s", c.after, c.maxBytes, ranges(got), err, c.want)
		}
	}
	genesis := []SegmentInfo{{First: 0, Last: 0, Bytes: 50}, {First: 1, Last: 3, Bytes: 50}}
	if got, err := SelectReadFrom(genesis, 0, 1000); err != nil || ranges(got) != "[1-3]" {
		t.Errorf("genesis log after 0: %s, %v", ranges(got), err)
	}
	if got, err := SelectReadFrom(nil, 5, 1000); err != nil || len(got) != 0 {
		t.Errorf("empty log: %v, %v", got, err)
	}
}
