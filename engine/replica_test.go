package engine

import (
	"context"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/s3log"
	"github.com/weaseldb/weaseldb/tx"
)

// sharedLogs starts a fake S3 on loopback and opens n S3 logs on one
// bucket and prefix, as n servers would.
func sharedLogs(t *testing.T, n int) []*s3log.Log {
	t.Helper()
	srv, err := fakes3.New(fakes3.Options{Buckets: []string{"wbucket"}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := fakes3.ListenTCP(srv, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	logs := make([]*s3log.Log, n)
	for i := range logs {
		l, err := s3log.Open(context.Background(), s3log.Config{Bucket: "wbucket", Prefix: "p", Endpoint: ts.URL, Region: "us-east-1",
			UsePathStyle: true, AccessKeyID: "k", SecretAccessKey: "s", RetryMaxBackoff: 20 * time.Millisecond, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs[i] = l
	}
	return logs
}

// followUntil calls Follow until the replica reaches v (bounded).
func followUntil(t *testing.T, r *Engine, v tx.Version) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.Version() < v {
		if time.Now().After(deadline) {
			t.Fatalf("replica at %d, want %d", r.Version(), v)
		}
		if _, err := r.Follow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplicaFollowsAndTakesOver: a replica keeps the conflict window, the
// status index and the tail warm from the log it follows; after Promote,
// read versions and request ids from the old leader's term still work,
// the old leader is fenced, and a subscriber's tail goes on unbroken.
func TestReplicaFollowsAndTakesOver(t *testing.T) {
	logs := sharedLogs(t, 2)
	clock := newTestClock()
	cfg := testConfig(clock)
	cfg.ConflictWindow = time.Hour
	ctx := context.Background()
	leader, err := Open(ctx, cfg, logs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close(ctx)
	first := submitWait(t, leader, commitOf("request-id-000000000001", nil, write("a", "1")))
	if first.Outcome != Committed {
		t.Fatalf("first commit: %v", first.Outcome)
	}
	replica, err := OpenReplica(ctx, cfg, logs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)
	if replica.Role() != RoleReplica || replica.Version() != leader.Version() || replica.LeaderID() != leader.LeaderID() {
		t.Fatalf("replica: role %s version %d leader %q; leader at %d, %q", replica.Role(), replica.Version(), replica.LeaderID(), leader.Version(), leader.LeaderID())
	}
	if r := submitWait(t, replica, commitOf("", nil, write("x", "1"))); r.Outcome != Deposed {
		t.Fatalf("commit on a replica: %v, want refused", r.Outcome)
	}
	readAt := leader.Version()
	second := submitWait(t, leader, commitOf("request-id-000000000002", nil, write("b", "2")))
	followUntil(t, replica, second.Version)

	// The tail holds what the replica followed, as on the leader.
	segs, _, err := replica.Tail().Read(readAt, true, nil)
	if err != nil || len(segs) != 1 {
		t.Fatalf("replica tail after %d: %d segments, %v", readAt, len(segs), err)
	}
	if h, _ := persist.DecodeSegmentHeader(segs[0]); h.Last != second.Version {
		t.Fatalf("replica tail segment ends at %d, want %d", h.Last, second.Version)
	}

	if err := replica.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if replica.Role() != RoleLeader || replica.LeaderID() == leader.LeaderID() || replica.TermFirstVersion() != second.Version+1 {
		t.Fatalf("promoted: role %s leader %q (old %q) term from %d", replica.Role(), replica.LeaderID(), leader.LeaderID(), replica.TermFirstVersion())
	}
	// Request ids of the old term: duplicates, and /v1/status knows them.
	if r := submitWait(t, replica, commitOf("request-id-000000000001", nil, write("a", "other"))); r.Outcome != Committed || !r.Duplicate || r.Version != first.Version {
		t.Fatalf("duplicate across the takeover: %+v", r)
	}
	if ans := replica.Status(StatusQuery{RequestID: []byte("request-id-000000000002")}); ans.State != StatusCommitted || ans.Version != second.Version {
		t.Fatalf("status across the takeover: %+v", ans)
	}
	// A read version from the old term: "b" was written after readAt.
	if r := submitWait(t, replica, commitOf("", []tx.Precondition{pointRead("b", readAt)}, write("c", "3"))); r.Outcome != Conflict {
		t.Fatalf("stale read across the takeover: %v, want conflict", r.Outcome)
	}
	if r := submitWait(t, replica, commitOf("", []tx.Precondition{pointRead("a", readAt)}, write("c", "3"))); r.Outcome != Committed {
		t.Fatalf("fresh read across the takeover: %v, want committed", r.Outcome)
	}
	// The tail went on from the followed segments to the new term's.
	segs, _, err = replica.Tail().Read(readAt, true, nil)
	if err != nil || len(segs) < 3 {
		t.Fatalf("tail across the takeover: %d segments, %v", len(segs), err)
	}
	// The old leader is fenced on its next write.
	if r := submitWait(t, leader, commitOf("", nil, write("z", "1"))); r.Outcome != Deposed {
		t.Fatalf("old leader after the takeover: %v, want deposed", r.Outcome)
	}
	select {
	case <-leader.Deposed():
	case <-time.After(10 * time.Second):
		t.Fatal("old leader not deposed")
	}
}

// TestPromoteAfterAnotherTakeover: a replica that promotes after another
// server took over (and wrote its claim) continues that server's log — its
// recovery reads the claim — and fences it, like any later term.
func TestPromoteAfterAnotherTakeover(t *testing.T) {
	logs := sharedLogs(t, 3)
	cfg := testConfig(newTestClock())
	ctx := context.Background()
	old, err := Open(ctx, cfg, logs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	submitWait(t, old, commitOf("", nil, write("a", "1")))
	replica, err := OpenReplica(ctx, cfg, logs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)
	other, err := Open(ctx, cfg, logs[2])
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	w := submitWait(t, other, commitOf("request-id-000000000009", nil, write("b", "2")))
	followUntil(t, replica, w.Version)
	if replica.LeaderID() != other.LeaderID() {
		t.Fatalf("replica follows %q, want %q", replica.LeaderID(), other.LeaderID())
	}
	if err := replica.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if r := submitWait(t, replica, commitOf("request-id-000000000009", nil, write("b", "x"))); !r.Duplicate || r.Version != w.Version {
		t.Fatalf("duplicate of the other term's commit: %+v", r)
	}
	if r := submitWait(t, other, commitOf("", nil, write("z", "1"))); r.Outcome != Deposed {
		t.Fatalf("the other leader after the takeover: %v, want deposed", r.Outcome)
	}
}
