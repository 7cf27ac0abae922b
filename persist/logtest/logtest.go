// Package logtest is the conformance suite every persist.Log backend runs,
// so that memlog, disk and s3 agree on the contract of persist.Log to the
// byte. A backend's test calls Run with a function that makes fresh storage:
//
//	func TestConformance(t *testing.T) {
//		logtest.Run(t, func(t *testing.T) logtest.Storage {
//			dir := t.TempDir()
//			return logtest.Storage{
//				Open:   func(t *testing.T) persist.Log { return mustOpen(t, dir) },
//				Damage: func(t *testing.T, first tx.Version, f func([]byte) []byte) { ... },
//			}
//		})
//	}
//
// The suite covers: append, recover and read back; ReadFrom paging and
// maxBytes; truncation and ErrNotFound below it; fencing between two Logs
// on one storage (sequential and racing), or for a backend whose fence is an
// exclusive open (Storage.ExclusiveOpen), that a second open fails and that
// stored and in-flight Firsts are fenced within one Log and across restarts; a gap (what follows it is
// discarded and reported, kept until the claim, then deleted by
// DeleteDiscarded, which refuses to run before a claim); a newcomer whose
// claim loses to the live leader's segment at the gap deletes nothing; a
// claim over a discarded segment holding its name replaces it; a torn last segment cut off; a corrupt middle
// segment refused with ErrCorruption; policies round-trip and durability
// across reopen; many concurrent Appends, then recovery.
package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// Storage is one backend's storage under test. Run asks for a fresh one per
// subtest.
type Storage struct {
	// Open returns a new Log on this storage, not yet recovered. The suite
	// calls it again after closing the previous Log to model a restart.
	// Required.
	Open func(t *testing.T) persist.Log
	// OpenSecond returns a second Log on this storage while another is
	// open: the competing leader of the fencing tests. Nil means Open.
	// (The disk backend needs this to bypass its lock file.)
	OpenSecond func(t *testing.T) persist.Log
	// Damage replaces the stored bytes of the segment named first with
	// damage(old bytes), bypassing the Log. Nil skips the torn and corrupt
	// segment tests.
	Damage func(t *testing.T, first tx.Version, damage func([]byte) []byte)
	// ExclusiveOpen, when set, declares that the backend fences by exclusive
	// access to its storage (the disk backend's LOCK file) rather than by
	// create-if-absent between two live Logs. It tries to open a second Log
	// while one is open and returns that attempt's error, which the suite
	// requires to be non-nil. The fencing tests then check the fence within
	// one Log (an Append whose First is stored or in flight fails with
	// ErrFenced, also between racing Appends) and across a restart (the next
	// leader) instead of between two live Logs. OpenSecond is not used.
	ExclusiveOpen func(t *testing.T) error
	// FramedTail declares that segments are frames appended to a file: a
	// tail torn down to zero bytes leaves no trace of its segment, so
	// Recovery cannot list it as discarded (it must still recover the run
	// before it and accept a rewrite).
	FramedTail bool
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, newStorage func(t *testing.T) Storage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Storage)
	}{
		{"Empty", testEmpty},
		{"AppendRecoverRead", testAppendRecoverRead},
		{"ReadFromPaging", testReadFromPaging},
		{"Truncate", testTruncate},
		{"RejectsMalformedSegment", testRejectsMalformed},
		{"Fencing", testFencing},
		{"FencingRace", testFencingRace},
		{"Gap", testGap},
		{"GapFilledByLiveLeader", testGapFilledByLiveLeader},
		{"ClaimReplacesDiscardedAtItsName", testClaimReplacesDiscardedAtItsName},
		{"TornTail", testTornTail},
		{"CorruptMiddle", testCorruptMiddle},
		{"Policies", testPolicies},
		{"ConcurrentAppends", testConcurrentAppends},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStorage(t)
			if s.Open == nil {
				t.Fatal("logtest: Storage.Open is nil")
			}
			tc.fn(t, s)
		})
	}
}

// Segment returns an encoded segment holding versions first..last (first
// 0 and last 0 for the genesis segment), with deterministic contents
// derived from the versions and tag, so that two leaders writing the same
// range produce different bytes.
func Segment(first, last tx.Version, tag string) []byte {
	return persist.EncodeSegment(nil, []byte("leader-"+tag), Txns(first, last, tag))
}

// Txns returns the transactions Segment(first, last, tag) holds.
func Txns(first, last tx.Version, tag string) []tx.Transaction {
	if first == 0 {
		return nil
	}
	txns := make([]tx.Transaction, 0, last-first+1)
	for v := first; v <= last; v++ {
		txns = append(txns, tx.Transaction{
			Version:           v,
			RequestID:         fmt.Appendf(nil, "req-%s-%d", tag, v),
			TimestampUnixNano: 1_780_000_000_000_000_000 + int64(v)*1000,
			Operations: []tx.Operation{
				{Type: tx.OpWrite, Key: fmt.Appendf(nil, "key-%d", v), Value: bytes.Repeat([]byte{byte(v)}, int(v%50))},
				{Type: tx.OpRangeDelete, Key: []byte("a"), End: []byte("b")},
			},
		})
	}
	return txns
}

func open(t *testing.T, s Storage) persist.Log {
	t.Helper()
	l := s.Open(t)
	t.Cleanup(func() { l.Close() })
	return l
}

func openSecond(t *testing.T, s Storage) persist.Log {
	t.Helper()
	o := s.OpenSecond
	if o == nil {
		o = s.Open
	}
	l := o(t)
	t.Cleanup(func() { l.Close() })
	return l
}

func recoverLog(t *testing.T, l persist.Log) persist.Recovery {
	t.Helper()
	rec, err := l.Recover(context.Background())
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return rec
}

// reopen closes l and returns a recovered Log on the same storage.
func reopen(t *testing.T, s Storage, l persist.Log) (persist.Log, persist.Recovery) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l = open(t, s)
	return l, recoverLog(t, l)
}

func mustAppend(t *testing.T, l persist.Log, segs ...[]byte) {
	t.Helper()
	for _, seg := range segs {
		if err := l.Append(context.Background(), seg); err != nil {
			h, _ := persist.DecodeSegmentHeader(seg)
			t.Fatalf("Append %d..%d: %v", h.First, h.Last, err)
		}
	}
}

// spans renders segment infos as "[0-0 1-5]" for comparison.
func spans(infos []persist.SegmentInfo) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, s := range infos {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d-%d", s.First, s.Last)
	}
	b.WriteByte(']')
	return b.String()
}

func checkSpans(t *testing.T, what string, got []persist.SegmentInfo, want string) {
	t.Helper()
	if s := spans(got); s != want {
		t.Fatalf("%s: %s, want %s", what, s, want)
	}
}

// readAll pages through ReadFrom(after) and returns the decoded versions,
// checking each page against maxBytes.
func readAll(t *testing.T, l persist.Log, after tx.Version, maxBytes int) []tx.Transaction {
	t.Helper()
	var all []tx.Transaction
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("ReadFrom paging does not end (after %d)", after)
		}
		segs, err := l.ReadFrom(context.Background(), after, maxBytes)
		if err != nil {
			t.Fatalf("ReadFrom(%d, %d): %v", after, maxBytes, err)
		}
		if len(segs) == 0 {
			return all
		}
		total := 0
		for _, seg := range segs {
			total += len(seg)
			h, txns, err := persist.DecodeSegment(seg, nil)
			if err != nil {
				t.Fatalf("ReadFrom(%d) returned a bad segment: %v", after, err)
			}
			if h.Last <= after {
				t.Fatalf("ReadFrom(%d) returned segment %d..%d, which holds nothing after %d", after, h.First, h.Last, after)
			}
			for _, x := range txns {
				if x.Version > after {
					all = append(all, x)
				}
			}
			after = h.Last
		}
		if len(segs) > 1 && total > maxBytes {
			t.Fatalf("ReadFrom(maxBytes %d) returned %d segments of %d bytes", maxBytes, len(segs), total)
		}
	}
}

// checkVersions checks that txns are exactly from..to in order, and equal
// to the transactions Segment wrote (by tag) where tag is not empty.
func checkVersions(t *testing.T, txns []tx.Transaction, from, to tx.Version) {
	t.Helper()
	if uint64(len(txns)) != uint64(to-from+1) {
		t.Fatalf("read %d transactions, want versions %d..%d", len(txns), from, to)
	}
	for i, x := range txns {
		if want := from + tx.Version(i); x.Version != want {
			t.Fatalf("transaction %d has version %d, want %d", i, x.Version, want)
		}
		if !bytes.HasPrefix(x.RequestID, []byte("req-")) || len(x.Operations) != 2 || !bytes.Equal(x.Operations[0].Key, fmt.Appendf(nil, "key-%d", x.Version)) {
			t.Fatalf("transaction %d: unexpected contents %+v", x.Version, x)
		}
	}
}

func testEmpty(t *testing.T, s Storage) {
	l := open(t, s)
	rec := recoverLog(t, l)
	if len(rec.Segments) != 0 || len(rec.Discarded) != 0 || rec.Last() != 0 || rec.OldestRetained() != 0 {
		t.Fatalf("new log recovered %+v", rec)
	}
	segs, err := l.ReadFrom(context.Background(), 0, 1<<20)
	if err != nil || len(segs) != 0 {
		t.Fatalf("ReadFrom on a new log: %d segments, %v", len(segs), err)
	}
	p, err := l.LoadPolicies(context.Background())
	if err != nil || len(p) != 0 {
		t.Fatalf("LoadPolicies on a new log: %v, %v", p, err)
	}
	if _, err := l.Truncate(context.Background(), 10); err != nil {
		t.Fatalf("Truncate on a new log: %v", err)
	}
}

func testAppendRecoverRead(t *testing.T, s Storage) {
	l := open(t, s)
	recoverLog(t, l)
	segs := [][]byte{Segment(0, 0, "a"), Segment(1, 3, "a"), Segment(4, 4, "a"), Segment(5, 10, "a")}
	mustAppend(t, l, segs...)
	checkVersions(t, readAll(t, l, 0, 1<<20), 1, 10)

	l, rec := reopen(t, s, l)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-3 4-4 5-10]")
	if len(rec.Discarded) != 0 || rec.Last() != 10 || rec.OldestRetained() != 0 {
		t.Fatalf("recovery %+v: want nothing discarded, last 10, oldest retained 0", rec)
	}
	for i, info := range rec.Segments {
		if info.Bytes != int64(len(segs[i])) {
			t.Fatalf("segment %d: recovered size %d, stored %d", info.First, info.Bytes, len(segs[i]))
		}
	}
	// The bytes come back unchanged.
	got, err := l.ReadFrom(context.Background(), 3, 1<<20)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], segs[2]) || !bytes.Equal(got[1], segs[3]) {
		t.Fatalf("ReadFrom(3) after reopen: %d segments, %v; want segments 4-4 and 5-10 byte for byte", len(got), err)
	}
	checkVersions(t, readAll(t, l, 4, 1<<20), 5, 10)
	checkVersions(t, readAll(t, l, 7, 1<<20), 8, 10)
	if rest := readAll(t, l, 10, 1<<20); len(rest) != 0 {
		t.Fatalf("ReadFrom(last) returned %d transactions", len(rest))
	}
	// The recovered log continues.
	mustAppend(t, l, Segment(11, 12, "a"))
	_, rec = reopen(t, s, l)
	checkSpans(t, "recovered after continuing", rec.Segments, "[0-0 1-3 4-4 5-10 11-12]")
}

func testReadFromPaging(t *testing.T, s Storage) {
	l := open(t, s)
	recoverLog(t, l)
	mustAppend(t, l, Segment(0, 0, "p"))
	v := tx.Version(1)
	var sizes []int
	for i := 1; i <= 20; i++ {
		seg := Segment(v, v+tx.Version(i%4), "p")
		sizes = append(sizes, len(seg))
		mustAppend(t, l, seg)
		v += tx.Version(i%4) + 1
	}
	last := v - 1
	for _, maxBytes := range []int{0, 1, slices.Min(sizes), 2 * slices.Max(sizes), 5000, 1 << 30} {
		checkVersions(t, readAll(t, l, 0, maxBytes), 1, last)
	}
	// maxBytes smaller than every segment still returns exactly one.
	segs, err := l.ReadFrom(context.Background(), 0, 1)
	if err != nil || len(segs) != 1 {
		t.Fatalf("ReadFrom(0, maxBytes 1): %d segments, %v; want 1", len(segs), err)
	}
	// A big maxBytes returns everything at once.
	segs, err = l.ReadFrom(context.Background(), 0, 1<<30)
	if err != nil || len(segs) != 20 {
		t.Fatalf("ReadFrom(0, 1 GiB): %d segments, %v; want 20", len(segs), err)
	}
}

func testTruncate(t *testing.T, s Storage) {
	ctx := context.Background()
	l := open(t, s)
	recoverLog(t, l)
	mustAppend(t, l, Segment(0, 0, "t"), Segment(1, 10, "t"), Segment(11, 20, "t"), Segment(21, 30, "t"))
	oldest, err := l.Truncate(ctx, 15)
	if err != nil || oldest != 10 {
		t.Fatalf("Truncate(15) = %d, %v; want 10 (segment 11-20 holds 15)", oldest, err)
	}
	if _, err := l.ReadFrom(ctx, 5, 1<<20); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("ReadFrom(5) after truncation: %v, want ErrNotFound", err)
	}
	if _, err := l.ReadFrom(ctx, 9, 1<<20); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("ReadFrom(9) after truncation: %v, want ErrNotFound (version 10 is gone)", err)
	}
	checkVersions(t, readAll(t, l, 10, 1<<20), 11, 30)
	checkVersions(t, readAll(t, l, 12, 1<<20), 13, 30)
	// Truncating below what is left changes nothing.
	if oldest, err := l.Truncate(ctx, 3); err != nil || oldest != 10 {
		t.Fatalf("Truncate(3) = %d, %v; want 10", oldest, err)
	}
	// Truncating everything keeps the newest segment.
	if oldest, err := l.Truncate(ctx, 1000); err != nil || oldest != 20 {
		t.Fatalf("Truncate(1000) = %d, %v; want 20 (newest segment 21-30 kept)", oldest, err)
	}
	l, rec := reopen(t, s, l)
	checkSpans(t, "recovered after truncation", rec.Segments, "[21-30]")
	if rec.OldestRetained() != 20 || rec.Last() != 30 {
		t.Fatalf("recovery after truncation: oldest retained %d, last %d; want 20, 30", rec.OldestRetained(), rec.Last())
	}
	if _, err := l.ReadFrom(ctx, 19, 1<<20); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("ReadFrom(19) after reopen: %v, want ErrNotFound", err)
	}
	mustAppend(t, l, Segment(31, 31, "t"))
	if oldest, err := l.Truncate(ctx, 30); err != nil || oldest != 30 {
		t.Fatalf("Truncate(30) = %d, %v; want 30", oldest, err)
	}
	checkVersions(t, readAll(t, l, 30, 1<<20), 31, 31)
	_, rec = reopen(t, s, l)
	checkSpans(t, "recovered after second truncation", rec.Segments, "[31-31]")
}

func testRejectsMalformed(t *testing.T, s Storage) {
	l := open(t, s)
	recoverLog(t, l)
	good := Segment(1, 2, "m")
	torn := good[:len(good)-1]
	for name, data := range map[string][]byte{"empty": nil, "garbage": []byte("not a segment at all, not at all"), "torn": torn} {
		if err := l.Append(context.Background(), data); err == nil {
			t.Fatalf("Append(%s) succeeded", name)
		}
	}
	_, rec := reopen(t, s, l)
	if len(rec.Segments) != 0 || len(rec.Discarded) != 0 {
		t.Fatalf("rejected appends left %s / discarded %s", spans(rec.Segments), spans(rec.Discarded))
	}
}

func testFencing(t *testing.T, s Storage) {
	if s.ExclusiveOpen != nil {
		testFencingExclusive(t, s)
		return
	}
	ctx := context.Background()
	a := open(t, s)
	recoverLog(t, a)
	mustAppend(t, a, Segment(0, 0, "a"), Segment(1, 5, "a"))

	// A second leader recovers and claims version 6.
	b := openSecond(t, s)
	rec := recoverLog(t, b)
	if rec.Last() != 5 {
		t.Fatalf("second leader recovered last %d, want 5", rec.Last())
	}
	mustAppend(t, b, Segment(6, 6, "b"))
	// The old leader's next write collides.
	if err := a.Append(ctx, Segment(6, 9, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("old leader's Append over the new leader's segment: %v, want ErrFenced", err)
	}
	// So does a rewrite of the genesis segment or any existing one.
	if err := b.Append(ctx, Segment(0, 0, "b")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("second genesis: %v, want ErrFenced", err)
	}
	if err := b.Append(ctx, Segment(1, 5, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("identical rewrite of segment 1: %v, want ErrFenced", err)
	}
	mustAppend(t, b, Segment(7, 8, "b"))
	a.Close()
	b, rec = reopen(t, s, b)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-5 6-6 7-8]")
	got := readAll(t, b, 0, 1<<20)
	checkVersions(t, got, 1, 8)
	if string(got[5].RequestID) != "req-b-6" {
		t.Fatalf("version 6 holds %q, want the new leader's req-b-6", got[5].RequestID)
	}
}

// testFencingExclusive is testFencing for a backend whose fence is the
// exclusive open: the second leader exists only after the first is gone.
func testFencingExclusive(t *testing.T, s Storage) {
	ctx := context.Background()
	a := open(t, s)
	recoverLog(t, a)
	mustAppend(t, a, Segment(0, 0, "a"), Segment(1, 5, "a"))
	if err := s.ExclusiveOpen(t); err == nil {
		t.Fatal("a second Log opened on storage held open by another: want an error")
	}
	// A rewrite of any stored segment collides, whatever its bytes.
	if err := a.Append(ctx, Segment(0, 0, "b")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("second genesis: %v, want ErrFenced", err)
	}
	if err := a.Append(ctx, Segment(1, 5, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("identical rewrite of segment 1: %v, want ErrFenced", err)
	}
	// The next leader (after a restart) recovers and claims version 6.
	b, rec := reopen(t, s, a)
	if rec.Last() != 5 {
		t.Fatalf("next leader recovered last %d, want 5", rec.Last())
	}
	mustAppend(t, b, Segment(6, 6, "b"))
	if err := b.Append(ctx, Segment(6, 9, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("Append over a stored segment: %v, want ErrFenced", err)
	}
	mustAppend(t, b, Segment(7, 8, "b"))
	b, rec = reopen(t, s, b)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-5 6-6 7-8]")
	got := readAll(t, b, 0, 1<<20)
	checkVersions(t, got, 1, 8)
	if string(got[5].RequestID) != "req-b-6" {
		t.Fatalf("version 6 holds %q, want the new leader's req-b-6", got[5].RequestID)
	}
}

func testFencingRace(t *testing.T, s Storage) {
	ctx := context.Background()
	a := open(t, s)
	recoverLog(t, a)
	mustAppend(t, a, Segment(0, 0, "a"))
	b := a // with ExclusiveOpen, two racing Appends of one First on one Log
	if s.ExclusiveOpen == nil {
		b = openSecond(t, s)
		recoverLog(t, b)
	}
	const rounds = 10
	for v := tx.Version(1); v <= rounds; v++ {
		var errA, errB error
		var wg sync.WaitGroup
		// Fresh leader ids each round: whoever wins a round starts a new
		// term, and a term never returns (persist.PlanRecovery rule 3).
		round := strconv.FormatUint(uint64(v), 10)
		wg.Go(func() { errA = a.Append(ctx, Segment(v, v, "a"+round)) })
		wg.Go(func() { errB = b.Append(ctx, Segment(v, v, "b"+round)) })
		wg.Wait()
		aWon := errA == nil && errors.Is(errB, persist.ErrFenced)
		bWon := errB == nil && errors.Is(errA, persist.ErrFenced)
		if aWon == bWon {
			t.Fatalf("version %d: leader a: %v, leader b: %v; want exactly one nil and one ErrFenced", v, errA, errB)
		}
	}
	if b != a {
		a.Close()
	}
	_, rec := reopen(t, s, b)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-1 2-2 3-3 4-4 5-5 6-6 7-7 8-8 9-9 10-10]")
}

func testGap(t *testing.T, s Storage) {
	ctx := context.Background()
	l := open(t, s)
	recoverLog(t, l)
	// 6-7 was in flight and never written when the process died; 8-9 and
	// 10-12 were written but never acknowledged.
	mustAppend(t, l, Segment(0, 0, "g"), Segment(1, 5, "g"), Segment(8, 9, "g"), Segment(10, 12, "g"))
	l, rec := reopen(t, s, l)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-5]")
	checkSpans(t, "discarded", rec.Discarded, "[8-9 10-12]")
	checkVersions(t, readAll(t, l, 0, 1<<20), 1, 5)
	// Only the winner of the log deletes: not before its claim.
	if err := l.DeleteDiscarded(ctx); err == nil {
		t.Fatal("DeleteDiscarded before any Append succeeded: want an error")
	}
	if s.ExclusiveOpen == nil {
		// Recover deleted nothing: another server recovering now still
		// finds the discarded segments.
		other := openSecond(t, s)
		checkSpans(t, "discarded, seen by a second Log before the claim", recoverLog(t, other).Discarded, "[8-9 10-12]")
		other.Close()
	}
	// The claim, then DeleteDiscarded: the log continues from 6, over the
	// names the discarded segments held.
	mustAppend(t, l, Segment(6, 7, "h"))
	if err := l.DeleteDiscarded(ctx); err != nil {
		t.Fatalf("DeleteDiscarded after the claim: %v", err)
	}
	mustAppend(t, l, Segment(8, 8, "h"), Segment(9, 9, "h"), Segment(10, 10, "h"))
	l, rec = reopen(t, s, l)
	checkSpans(t, "recovered after continuing", rec.Segments, "[0-0 1-5 6-7 8-8 9-9 10-10]")
	if len(rec.Discarded) != 0 {
		t.Fatalf("second recovery discarded %s again", spans(rec.Discarded))
	}
	checkVersions(t, readAll(t, l, 0, 1<<20), 1, 10)
}

// testGapFilledByLiveLeader is issue 12 item 1 at the Log level: a second
// server recovers while the live leader's segment at the gap is still in
// flight; the leader's segment lands first, so the newcomer's claim is
// fenced; the newcomer must not have deleted the leader's segments after
// the gap, which the leader has now acknowledged.
func testGapFilledByLiveLeader(t *testing.T, s Storage) {
	if s.ExclusiveOpen != nil {
		t.Skip("the backend's fence is an exclusive open: no second server shares the storage")
	}
	ctx := context.Background()
	a := open(t, s)
	recoverLog(t, a)
	// The leader's 6-7 is in flight; 8-9 and 10-12 landed before it.
	mustAppend(t, a, Segment(0, 0, "a"), Segment(1, 5, "a"), Segment(8, 9, "a"), Segment(10, 12, "a"))
	b := openSecond(t, s)
	rec := recoverLog(t, b)
	checkSpans(t, "newcomer discarded", rec.Discarded, "[8-9 10-12]")
	// 6-7 lands: the leader releases (acknowledges) 1..12.
	mustAppend(t, a, Segment(6, 7, "a"))
	// The newcomer's claim at 6 loses, and it may not delete.
	if err := b.Append(ctx, Segment(6, 6, "b")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("newcomer's claim over the leader's segment: %v, want ErrFenced", err)
	}
	if err := b.DeleteDiscarded(ctx); err == nil {
		t.Fatal("DeleteDiscarded by a fenced newcomer: want an error")
	}
	b.Close()
	mustAppend(t, a, Segment(13, 13, "a"))
	_, rec = reopen(t, s, a)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-5 6-7 8-9 10-12 13-13]")
}

// testClaimReplacesDiscardedAtItsName: a discarded segment holding exactly
// the claim's name (the orphan of a returned leader term) is replaced by
// the claim, atomically; a second claimant over the same orphan is fenced,
// and a leader's plain write of the name stays fenced throughout.
func testClaimReplacesDiscardedAtItsName(t *testing.T, s Storage) {
	if s.ExclusiveOpen != nil {
		t.Skip("the backend's fence is an exclusive open: one writer, so no leader term can return")
	}
	ctx := context.Background()
	a := open(t, s)
	recoverLog(t, a)
	// Leader a, then leader b claims at 6 and writes 7-8; then a's orphan
	// lands at 9 (a's term returns: PlanRecovery rule 3 discards it).
	mustAppend(t, a, Segment(0, 0, "a"), Segment(1, 5, "a"), Segment(6, 6, "b"), Segment(7, 8, "b"), Segment(9, 10, "a"))
	c, rec := reopen(t, s, a)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-5 6-6 7-8]")
	checkSpans(t, "discarded", rec.Discarded, "[9-10]")
	d := openSecond(t, s)
	recoverLog(t, d)
	mustAppend(t, c, Segment(9, 9, "c")) // the claim replaces the orphan
	if err := d.Append(ctx, Segment(9, 9, "d")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("second claim over the replaced orphan: %v, want ErrFenced", err)
	}
	d.Close()
	if err := c.Append(ctx, Segment(9, 12, "b")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("a leader's write of the claimed name: %v, want ErrFenced", err)
	}
	if err := c.DeleteDiscarded(ctx); err != nil {
		t.Fatalf("DeleteDiscarded: %v", err)
	}
	mustAppend(t, c, Segment(10, 11, "c"))
	_, rec = reopen(t, s, c)
	checkSpans(t, "recovered", rec.Segments, "[0-0 1-5 6-6 7-8 9-9 10-11]")
	if len(rec.Discarded) != 0 {
		t.Fatalf("discarded %s after the claim replaced the orphan", spans(rec.Discarded))
	}
}

func testTornTail(t *testing.T, s Storage) {
	if s.Damage == nil {
		t.Skip("backend offers no Damage hook")
	}
	for k, keep := range []func(n int) int{
		func(n int) int { return 0 },
		func(n int) int { return persist.SegmentHeaderBytes - 1 },
		func(n int) int { return n / 2 },
		func(n int) int { return n - 1 },
	} {
		func() {
			l := open(t, s)
			rec := recoverLog(t, l)
			next := rec.Last() + 1
			// Each round is a new leader term: a term never returns after
			// another one followed it (persist.PlanRecovery rule 3).
			term := "x" + strconv.Itoa(k)
			if len(rec.Segments) == 0 {
				mustAppend(t, l, Segment(0, 0, term))
			}
			mustAppend(t, l, Segment(next, next+4, term), Segment(next+5, next+8, term))
			s.Damage(t, next+5, func(b []byte) []byte { return b[:keep(len(b))] })
			l, rec = reopen(t, s, l)
			if rec.Last() != next+4 {
				t.Fatalf("torn tail: recovered %s, want last %d", spans(rec.Segments), next+4)
			}
			if s.FramedTail && k == 0 { // torn to nothing: no trace left
				if len(rec.Discarded) != 0 {
					t.Fatalf("torn tail of 0 bytes: discarded %s, want nothing", spans(rec.Discarded))
				}
			} else if len(rec.Discarded) != 1 || rec.Discarded[0].First != next+5 {
				t.Fatalf("torn tail: discarded %s, want the segment at %d", spans(rec.Discarded), next+5)
			}
			checkVersions(t, readAll(t, l, 0, 1<<20), 1, next+4)
			// The torn segment holds the next claim's name: the claim
			// replaces it.
			mustAppend(t, l, Segment(next+5, next+5, "y"+strconv.Itoa(k)))
			l.Close()
		}()
	}
}

func testCorruptMiddle(t *testing.T, s Storage) {
	if s.Damage == nil {
		t.Skip("backend offers no Damage hook")
	}
	l := open(t, s)
	recoverLog(t, l)
	mustAppend(t, l, Segment(0, 0, "c"), Segment(1, 5, "c"), Segment(6, 9, "c"), Segment(10, 12, "c"))
	s.Damage(t, 6, func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0x10
		return b
	})
	l.Close()
	l2 := open(t, s)
	if _, err := l2.Recover(context.Background()); !errors.Is(err, persist.ErrCorruption) {
		t.Fatalf("Recover with a corrupt middle segment: %v, want ErrCorruption", err)
	}
	l2.Close()
	// Nothing was deleted: repairing the segment makes the log whole again.
	s.Damage(t, 6, func([]byte) []byte { return Segment(6, 9, "c") })
	l3 := open(t, s)
	rec := recoverLog(t, l3)
	checkSpans(t, "recovered after repair", rec.Segments, "[0-0 1-5 6-9 10-12]")
}

func testPolicies(t *testing.T, s Storage) {
	ctx := context.Background()
	l := open(t, s)
	recoverLog(t, l)
	want := map[string]tx.Version{"backup": 5, "replica/eu-west-1": 7, "../../etc/passwd": 1, "ünïcode ✓": 1 << 60, "": 0}
	if err := l.StorePolicies(ctx, want); err != nil {
		t.Fatalf("StorePolicies: %v", err)
	}
	got, err := l.LoadPolicies(ctx)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("LoadPolicies: %v, %v; want %v", got, err, want)
	}
	got["backup"] = 99 // the caller's map is its own
	l, _ = reopen(t, s, l)
	got, err = l.LoadPolicies(ctx)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("LoadPolicies after reopen: %v, %v; want %v", got, err, want)
	}
	next := map[string]tx.Version{"backup": 9}
	if err := l.StorePolicies(ctx, next); err != nil {
		t.Fatalf("StorePolicies: %v", err)
	}
	l, _ = reopen(t, s, l)
	if got, err := l.LoadPolicies(ctx); err != nil || !maps.Equal(got, next) {
		t.Fatalf("LoadPolicies after replace: %v, %v; want %v", got, err, next)
	}
	if err := l.StorePolicies(ctx, map[string]tx.Version{}); err != nil {
		t.Fatalf("StorePolicies(empty): %v", err)
	}
	l, _ = reopen(t, s, l)
	if got, err := l.LoadPolicies(ctx); err != nil || len(got) != 0 {
		t.Fatalf("LoadPolicies after clearing: %v, %v; want empty", got, err)
	}
}

// testConcurrentAppends keeps many Appends in flight, as the pipeline does,
// with readers running meanwhile, then recovers.
func testConcurrentAppends(t *testing.T, s Storage) {
	ctx := context.Background()
	l := open(t, s)
	recoverLog(t, l)
	mustAppend(t, l, Segment(0, 0, "c"))
	const writers, perWriter, width = 8, 12, 3
	var next atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter+1)
	for range writers {
		wg.Go(func() {
			for range perWriter {
				k := tx.Version(next.Add(1) - 1)
				first := k*width + 1
				if err := l.Append(ctx, Segment(first, first+width-1, "c")); err != nil {
					errs <- fmt.Errorf("Append %d: %w", first, err)
				}
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			segs, err := l.ReadFrom(ctx, 0, 1<<20)
			if err != nil {
				errs <- fmt.Errorf("ReadFrom during appends: %w", err)
				return
			}
			want := tx.Version(1) // whatever is returned is contiguous from 1
			for _, seg := range segs {
				h, err := persist.DecodeSegmentHeader(seg)
				if err != nil || h.First != want {
					errs <- fmt.Errorf("ReadFrom during appends: segment %+v (%v), want first %d", h, err, want)
					return
				}
				want = h.Last + 1
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	last := tx.Version(writers * perWriter * width)
	checkVersions(t, readAll(t, l, 0, 1<<20), 1, last)
	l, rec := reopen(t, s, l)
	if rec.Last() != last || len(rec.Segments) != writers*perWriter+1 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered %d segments to %d, discarded %s; want %d to %d", len(rec.Segments), rec.Last(), spans(rec.Discarded), writers*perWriter+1, last)
	}
	checkVersions(t, readAll(t, l, 0, 4096), 1, last)
}
