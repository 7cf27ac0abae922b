package s3log

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/logtest"
)

// testLeaseConditional: the lease is created only where none exists
// (If-None-Match: *) and replaced only by whoever holds its current ETag
// (If-Match). Shared by the fake S3 and the versitygw runs.
func testLeaseConditional(t *testing.T, cfg Config) {
	ctx := context.Background()
	a := openLog(t, cfg)
	defer a.Close()
	b := openLog(t, cfg)
	defer b.Close()
	if _, _, found, err := a.ReadLease(ctx); err != nil || found {
		t.Fatalf("ReadLease on an empty prefix: found %v, %v", found, err)
	}
	la := Lease{LeaderID: "aaaa", URL: "http://127.0.0.1:1", TermFirstVersion: 5, Renewals: 1}
	etagA, err := a.WriteLease(ctx, la, "")
	if err != nil || etagA == "" {
		t.Fatalf("create lease: etag %q, %v", etagA, err)
	}
	// A second creation must fail: the lease exists.
	lb := Lease{LeaderID: "bbbb", URL: "http://127.0.0.1:2", TermFirstVersion: 9, Renewals: 1}
	if _, err := b.WriteLease(ctx, lb, ""); !errors.Is(err, ErrLeaseChanged) {
		t.Fatalf("second create: %v, want ErrLeaseChanged", err)
	}
	got, etag, found, err := b.ReadLease(ctx)
	if err != nil || !found || got.LeaderID != "aaaa" || etag != etagA {
		t.Fatalf("ReadLease = %+v %q %v %v; want a's lease with etag %q", got, etag, found, err, etagA)
	}
	// a renews with its ETag.
	la.Renewals++
	etagA2, err := a.WriteLease(ctx, la, etagA)
	if err != nil || etagA2 == etagA {
		t.Fatalf("renew: etag %q (was %q), %v", etagA2, etagA, err)
	}
	// b replaces the lease with the ETag it saw, which is stale now.
	if _, err := b.WriteLease(ctx, lb, etagA); !errors.Is(err, ErrLeaseChanged) {
		t.Fatalf("replace with a stale ETag: %v, want ErrLeaseChanged", err)
	}
	// With the current one it wins, and a's next renewal fails.
	if _, err := b.WriteLease(ctx, lb, etagA2); err != nil {
		t.Fatalf("replace with the current ETag: %v", err)
	}
	la.Renewals++
	if _, err := a.WriteLease(ctx, la, etagA2); !errors.Is(err, ErrLeaseChanged) {
		t.Fatalf("a renews after b took the lease: %v, want ErrLeaseChanged", err)
	}
	if got, _, _, _ := a.ReadLease(ctx); got.LeaderID != "bbbb" || got.TermFirstVersion != 9 {
		t.Fatalf("lease after takeover = %+v, want b's", got)
	}
}

func TestLeaseConditional(t *testing.T) {
	f := startFake(t)
	testLeaseConditional(t, testConfig(f.url))
}

// TestLeaseRenewalWhoseAnswerWasLost: a renewal stored by S3 whose answer
// is lost is retried; the retry's If-Match no longer matches (412), and the
// read-back must recognise our own bytes instead of reporting the lease
// lost.
func TestLeaseRenewalWhoseAnswerWasLost(t *testing.T) {
	f := startFake(t)
	ctx := context.Background()
	l := openLog(t, testConfig(f.url))
	defer l.Close()
	lease := Lease{LeaderID: "aaaa", URL: "http://x", TermFirstVersion: 1, Renewals: 1}
	etag, err := l.WriteLease(ctx, lease, "")
	if err != nil {
		t.Fatal(err)
	}
	before := f.srv.Faults().Requests(fakes3.OpPutObject)
	f.srv.Faults().Set(fakes3.Fault{DropAfterApplyRate: 1}, fakes3.OpPutObject)
	lease.Renewals++
	done := make(chan error, 1)
	var etag2 string
	go func() {
		var err error
		etag2, err = l.WriteLease(ctx, lease, etag)
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for f.srv.Faults().Requests(fakes3.OpPutObject) < before+2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	f.srv.Faults().Clear()
	if err := <-done; err != nil {
		t.Fatalf("renewal whose answer was lost: %v", err)
	}
	got, stored, _, err := l.ReadLease(ctx)
	if err != nil || got.Renewals != 2 || stored != etag2 {
		t.Fatalf("stored lease %+v etag %q, %v; want renewal 2 with etag %q", got, stored, err, etag2)
	}
}

// testFollow: a replica observes the log, then polls what the leader
// appends, never past a gap, never an orphan overlapping the run, and
// notices truncation.
func testFollow(t *testing.T, cfg Config) {
	ctx := context.Background()
	leader := openLog(t, cfg)
	defer leader.Close()
	if _, err := leader.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]byte{logtest.Segment(0, 0, "a"), logtest.Segment(1, 3, "a")} {
		if err := leader.Append(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	replica := openLog(t, cfg)
	defer replica.Close()
	rec, err := replica.Observe(ctx)
	if err != nil || rec.Last() != 3 {
		t.Fatalf("Observe = %+v, %v; want last 3", rec, err)
	}
	all := func(persist.SegmentHeader) bool { return true }
	if segs, err := replica.Poll(ctx, 1<<20, all); err != nil || len(segs) != 0 {
		t.Fatalf("Poll with nothing new = %d segments, %v", len(segs), err)
	}
	// 7..9 lands before 4..6 (pipelined writes): not followed until 4..6.
	if err := leader.Append(ctx, logtest.Segment(7, 9, "a")); err != nil {
		t.Fatal(err)
	}
	if segs, err := replica.Poll(ctx, 1<<20, all); err != nil || len(segs) != 0 {
		t.Fatalf("Poll across a gap = %d segments, %v; want none", len(segs), err)
	}
	if err := leader.Append(ctx, logtest.Segment(4, 6, "a")); err != nil {
		t.Fatal(err)
	}
	segs, err := replica.Poll(ctx, 1<<20, all)
	if err != nil || len(segs) != 2 {
		t.Fatalf("Poll = %d segments, %v; want 4..6 and 7..9", len(segs), err)
	}
	if h, _ := persist.DecodeSegmentHeader(segs[1]); h.First != 7 || h.Last != 9 {
		t.Fatalf("second polled segment holds %d..%d", h.First, h.Last)
	}
	// accept refusing a segment stops the run there.
	if err := leader.Append(ctx, logtest.Segment(10, 10, "b")); err != nil {
		t.Fatal(err)
	}
	if segs, err := replica.Poll(ctx, 1<<20, func(h persist.SegmentHeader) bool { return string(h.LeaderID) != "leader-b" }); err != nil || len(segs) != 0 {
		t.Fatalf("Poll of a refused segment = %d segments, %v", len(segs), err)
	}
	if segs, err := replica.Poll(ctx, 1<<20, all); err != nil || len(segs) != 1 {
		t.Fatalf("Poll after accepting = %d segments, %v", len(segs), err)
	}
	// The replica reads what it followed, like the leader.
	got, err := replica.ReadFrom(ctx, 5, 1<<20)
	if err != nil || len(got) != 3 {
		t.Fatalf("replica ReadFrom(5) = %d segments, %v; want 3", len(got), err)
	}
	// Truncation by the leader: the replica's index forgets the deleted
	// segments within pruneEvery polls.
	if _, err := leader.Truncate(ctx, 6); err != nil {
		t.Fatal(err)
	}
	for range pruneEvery {
		if _, err := replica.Poll(ctx, 1<<20, all); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := replica.ReadFrom(ctx, 2, 1<<20); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("replica ReadFrom(2) after truncation: %v, want ErrNotFound", err)
	}
	if got := replica.OldestRetained(); got != 6 {
		t.Fatalf("replica OldestRetained after truncation = %d, want 6", got)
	}
	// Observe never deletes: a discarded tail stays for the leader.
	if err := leader.Append(ctx, logtest.Segment(20, 20, "a")); err != nil {
		t.Fatal(err)
	}
	other := openLog(t, cfg)
	defer other.Close()
	if rec, err := other.Observe(ctx); err != nil || rec.Last() != 10 || len(rec.Discarded) != 1 {
		t.Fatalf("Observe = %+v, %v; want last 10, one discarded", rec, err)
	}
	if rec, err := leader.Recover(ctx); err != nil || len(rec.Discarded) != 1 {
		t.Fatalf("leader's Recover after Observe = %+v, %v; want the discarded segment still there", rec, err)
	}
}

func TestFollow(t *testing.T) {
	f := startFake(t)
	testFollow(t, testConfig(f.url))
}
