package s3log

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

// TestTruncationCrashLeavesHoles is the known risk of truncation by
// DeleteObjects batches: S3 does not apply a batch in order, so a crash
// during one may leave any subset of the truncated segments. Here the
// batch fails (the connection drops) after S3 deleted only the middle
// segment of three; a restart must not take that hole for a gap and
// discard everything after it (every acknowledged version): the floor
// marker written before the deletes tells recovery where the log starts.
func TestTruncationCrashLeavesHoles(t *testing.T) {
	f := startFake(t)
	cfg := testConfig(f.url)
	cfg.RetryMaxAttempts = 1
	l := openLog(t, cfg)
	ctx := context.Background()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seg := range [][]byte{logtest.Segment(0, 0, "t"), logtest.Segment(1, 2, "t"), logtest.Segment(3, 4, "t"),
		logtest.Segment(5, 6, "t"), logtest.Segment(7, 8, "t"), logtest.Segment(9, 10, "t"), logtest.Segment(11, 12, "t")} {
		if err := l.Append(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	// Truncate up to 6; the DeleteObjects batch never answers.
	f.srv.Faults().Set(fakes3.Fault{DropRate: 1}, fakes3.OpDeleteObjects)
	if _, err := l.Truncate(ctx, 6); err == nil {
		t.Fatal("Truncate with its deletes dropped: want an error")
	}
	f.srv.Faults().Clear()
	l.Close()
	// What S3 may have done of the batch: the middle segment only.
	raw := rawClient(f.url, nil)
	key := func(first tx.Version) string {
		return testPrefix + "/log/" + string(persist.AppendSegmentName(nil, first))
	}
	if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key(3))}); err != nil {
		t.Fatal(err)
	}

	l2 := openLog(t, cfg)
	defer l2.Close()
	rec, err := l2.Recover(ctx)
	if err != nil {
		t.Fatalf("recover after a truncation cut short: %v", err)
	}
	if rec.Last() != 12 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered to %d, discarded %v: the hole the truncation left was taken for a gap; want the log to 12, nothing discarded", rec.Last(), rec.Discarded)
	}
	if rec.OldestRetained() != 6 {
		t.Fatalf("oldest retained %d, want 6", rec.OldestRetained())
	}
	segs, err := l2.ReadFrom(ctx, 6, 1<<20)
	if err != nil || len(segs) != 3 {
		t.Fatalf("ReadFrom(6): %d segments, %v; want 7-8 9-10 11-12", len(segs), err)
	}
	// The winner finishes the truncation once its claim is stored.
	if err := l2.Append(ctx, logtest.Segment(13, 13, "u")); err != nil {
		t.Fatal(err)
	}
	if err := l2.DeleteDiscarded(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := raw.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(testPrefix + "/log/")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range out.Contents {
		names = append(names, strings.TrimPrefix(aws.ToString(o.Key), testPrefix+"/log/"))
	}
	if len(names) != 4 || names[0] != string(persist.AppendSegmentName(nil, 7)) {
		t.Fatalf("stored after the claim: %v, want the segments from 7 on only", names)
	}
}
