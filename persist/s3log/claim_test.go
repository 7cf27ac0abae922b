package s3log

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/logtest"
)

// afterRecover is a persist.Log that runs a hook after each Recover.
type afterRecover struct {
	persist.Log
	hook func()
}

func (a *afterRecover) Recover(ctx context.Context) (persist.Recovery, error) {
	rec, err := a.Log.Recover(ctx)
	if a.hook != nil {
		a.hook()
	}
	return rec, err
}

// TestRetriedStartAfterLateClaimIsOurs is the known defect "after an S3
// outage the server exited fenced": a start-up's claim PUT timed out and
// S3 stored it later; the start-up was retried (cmd/weaseldb openEngine
// retries engine.Open on a timeout), its recovery listed the log before
// the late claim landed, and its own claim of the same version got 412.
// The read-back found bytes other than the retried claim's (a claim is
// encoded again on every attempt, with a new timestamp, and used to get a
// new leader id too), so s3log said "fenced" and the server gave up. Now
// the leader id is the process's for every attempt and the read-back
// compares identity (leader id and versions): the late claim is ours.
func TestRetriedStartAfterLateClaimIsOurs(t *testing.T) {
	f := startFake(t)
	cfg := testConfig(f.url)
	cfg.OperationTimeout = 500 * time.Millisecond
	cfg.RetryMaxAttempts = 1
	l := openLog(t, cfg)
	defer l.Close()
	ctx := context.Background()
	ecfg := engine.Config{LeaderID: []byte("0123456789abcdef0123456789abcdef")}

	// An earlier leader wrote the genesis segment.
	e0, err := engine.Open(ctx, engine.Config{}, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := e0.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Attempt 1: the claim at version 1 is held by S3 past its timeout.
	f.srv.Faults().Set(fakes3.Fault{LateApplyRate: 1}, fakes3.OpPutObject)
	f.srv.Faults().HoldLate()
	defer f.srv.Faults().Clear()
	if _, err := engine.Open(ctx, ecfg, l); err == nil || errors.Is(err, persist.ErrFenced) {
		t.Fatalf("start-up whose claim timed out: %v, want a timeout", err)
	}
	f.srv.Faults().Set(fakes3.Fault{}) // the held claim stays held

	// Attempt 2 lists the log, then the late claim lands, then it claims.
	raw := rawClient(f.url, nil)
	key := testPrefix + "/log/" + string(persist.AppendSegmentName(nil, 1))
	landed := false
	hooked := &afterRecover{Log: l, hook: func() {
		f.srv.Faults().ReleaseLate()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err == nil {
				landed = true
				return
			}
		}
	}}
	e, err := engine.Open(ctx, ecfg, hooked)
	if !landed {
		t.Fatal("the held claim never landed")
	}
	if err != nil {
		t.Fatalf("retried start-up after its own claim landed late: %v, want it to lead", err)
	}
	defer e.Close(ctx)
	if e.Version() != 1 {
		t.Fatalf("leads from version %d, want 1 (the late claim is its own)", e.Version())
	}
	// The tail serves the claim as stored, byte for byte.
	stored, err := l.ReadFrom(ctx, 0, 1)
	if err != nil || len(stored) != 1 {
		t.Fatalf("read the claim back: %v (%d segments)", err, len(stored))
	}
	tail, _, err := e.Tail().Read(0, true, nil)
	if err != nil || len(tail) != 1 || string(tail[0]) != string(stored[0]) {
		t.Fatalf("tail holds %d segments (err %v), want exactly the stored claim", len(tail), err)
	}
}

// TestDeleteDiscardedIsConditional: DeleteDiscarded deletes only the very
// object recovery judged. A server that recovered, then was slow to delete,
// must not remove a segment a later winner wrote under a discarded name
// meanwhile (here: the name was deleted and written again behind its back).
func TestDeleteDiscardedIsConditional(t *testing.T) {
	f := startFake(t)
	l := openLog(t, testConfig(f.url))
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seg := range [][]byte{logtest.Segment(0, 0, "a"), logtest.Segment(1, 5, "a"), logtest.Segment(8, 9, "a")} {
		if err := l.Append(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	l2 := openLog(t, testConfig(f.url))
	defer l2.Close()
	rec, err := l2.Recover(ctx)
	if err != nil || len(rec.Discarded) != 1 {
		t.Fatalf("recover: %v, discarded %v; want segment 8 discarded", err, rec.Discarded)
	}
	// Behind l2's back: segment 8 is deleted and written again by another.
	raw := rawClient(f.url, nil)
	key := testPrefix + "/log/" + string(persist.AppendSegmentName(nil, 8))
	if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	other := logtest.Segment(8, 8, "c")
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), Body: bytes.NewReader(other)}); err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(ctx, logtest.Segment(6, 7, "b")); err != nil {
		t.Fatal(err)
	}
	if err := l2.DeleteDiscarded(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("the rewritten segment 8 was deleted: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, other) {
		t.Fatal("segment 8 holds other bytes than the rewrite")
	}
}
