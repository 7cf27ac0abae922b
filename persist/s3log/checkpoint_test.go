package s3log

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// appendTxns appends n segments of one transaction each after last.
func appendTxns(t *testing.T, l *Log, leader []byte, last tx.Version, n int) tx.Version {
	t.Helper()
	for range n {
		last++
		seg := persist.EncodeSegment(nil, leader, []tx.Transaction{{Version: last, Operations: []tx.Operation{{Type: tx.OpWrite, Key: []byte("k"), Value: []byte("v")}}}})
		if err := l.Append(context.Background(), seg); err != nil {
			t.Fatal(err)
		}
	}
	return last
}

// TestRecoveryReadsOnlyNewSegments (issue 12 item 16): a second recovery
// GETs only the segments written since the first (the rest come from the
// recovery checkpoint); a damaged checkpoint, or a segment replaced under
// the same name, falls back to reading; the recovered run is the same.
func TestRecoveryReadsOnlyNewSegments(t *testing.T) {
	fake := startFake(t)
	cfg := testConfig(fake.url)
	ctx := context.Background()
	leader := []byte("leader-a")

	l1 := openLog(t, cfg)
	if _, err := l1.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l1.Append(ctx, persist.EncodeSegment(nil, leader, nil)); err != nil {
		t.Fatal(err)
	}
	last := appendTxns(t, l1, leader, 0, 200)

	gets := func(l *Log) uint64 { return l.Stats().Ops[OpGet].Requests }
	recoverWith := func() (*Log, persist.Recovery) {
		t.Helper()
		l := openLog(t, cfg)
		rec, err := l.Recover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l, rec
	}
	l2, rec2 := recoverWith() // no checkpoint yet: reads all 201
	if rec2.Last() != last || len(rec2.Segments) != 201 || gets(l2) < 201 {
		t.Fatalf("first recovery: last %d, %d segments, %d GETs", rec2.Last(), len(rec2.Segments), gets(l2))
	}
	last = appendTxns(t, l2, leader, last, 5)
	l3, rec3 := recoverWith()
	if rec3.Last() != last || len(rec3.Segments) != 206 {
		t.Fatalf("second recovery: last %d, %d segments", rec3.Last(), len(rec3.Segments))
	}
	// The checkpoint itself, and the 5 new segments.
	if g := gets(l3); g > 1+5 {
		t.Fatalf("second recovery made %d GETs, want at most 6 (checkpoint + 5 new segments)", g)
	}
	for i := range rec2.Segments {
		if rec3.Segments[i] != rec2.Segments[i] {
			t.Fatalf("segment %d: %+v, first recovery found %+v", i, rec3.Segments[i], rec2.Segments[i])
		}
	}

	// A damaged checkpoint: everything is read again, same result.
	raw := rawClient(fake.url, nil)
	key := l3.checkpointKey()
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), Body: bytes.NewReader([]byte("weaseldb-s3log-checkpoint 1\nS 1 2\nX 0\n"))}); err != nil {
		t.Fatal(err)
	}
	l4, rec4 := recoverWith()
	if rec4.Last() != last || len(rec4.Segments) != 206 || gets(l4) < 206 {
		t.Fatalf("recovery with a damaged checkpoint: last %d, %d segments, %d GETs", rec4.Last(), len(rec4.Segments), gets(l4))
	}

	// A segment replaced under its name (a log deleted and rewritten under
	// the same prefix): its ETag changed, so it is read, not trusted.
	k := l4.segmentKey(rec4.Segments[len(rec4.Segments)-1].First)
	if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k)}); err != nil {
		t.Fatal(err)
	}
	other := persist.EncodeSegment(nil, []byte("leader-b"), []tx.Transaction{{Version: last, Operations: []tx.Operation{{Type: tx.OpDelete, Key: []byte("zz")}}}})
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: bytes.NewReader(other)}); err != nil {
		t.Fatal(err)
	}
	l5, rec5 := recoverWith()
	if rec5.Last() != last || gets(l5) != 2 { // checkpoint + the replaced segment
		t.Fatalf("recovery after a replaced segment: last %d, %d GETs, want 2", rec5.Last(), gets(l5))
	}
	segs, err := l5.ReadFrom(ctx, last-1, 1<<20)
	if err != nil || len(segs) != 1 {
		t.Fatalf("ReadFrom: %d segments, %v", len(segs), err)
	}
	if h, _ := persist.DecodeSegmentHeader(segs[0]); string(h.LeaderID) != "leader-b" {
		t.Fatalf("read back leader %q", h.LeaderID)
	}
}

// TestSegmentCacheServesRestart (issue 12 item 16): with a segment cache,
// a restart's recovery and its read of the whole log GET nothing but the
// checkpoint; a cached copy whose name now holds other bytes (new ETag) is
// not used; a torn cache file is cut and the log still reads right.
func TestSegmentCacheServesRestart(t *testing.T) {
	fake := startFake(t)
	cfg := testConfig(fake.url)
	cfg.CacheDir = t.TempDir()
	ctx := context.Background()
	leader := []byte("leader-a")

	l1 := openLog(t, cfg)
	if _, err := l1.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l1.Append(ctx, persist.EncodeSegment(nil, leader, nil)); err != nil {
		t.Fatal(err)
	}
	last := appendTxns(t, l1, leader, 0, 100)
	l1.Close()

	readAll := func(l *Log) int {
		t.Helper()
		n := 0
		for after := tx.Version(0); after < last; {
			segs, err := l.ReadFrom(ctx, after, 1<<20)
			if err != nil || len(segs) == 0 {
				t.Fatalf("ReadFrom(%d): %d segments, %v", after, len(segs), err)
			}
			for _, seg := range segs {
				h, err := persist.DecodeSegmentHeader(seg)
				if err != nil {
					t.Fatal(err)
				}
				after = h.Last
				n++
			}
		}
		return n
	}
	restart := func() *Log {
		t.Helper()
		l := openLog(t, cfg)
		t.Cleanup(func() { l.Close() })
		if _, err := l.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		return l
	}
	l2 := restart() // no checkpoint yet, but every segment is cached
	if g := l2.Stats().Ops[OpGet].Requests; g != 1 {
		t.Fatalf("recovery with a warm cache made %d GETs, want 1 (the checkpoint)", g)
	}
	if n := readAll(l2); n != 100 || l2.Stats().Ops[OpGet].Requests != 1 {
		t.Fatalf("read %d segments with %d GETs, want 100 with no more GET", n, l2.Stats().Ops[OpGet].Requests)
	}
	l2.Close()

	// Replace the last segment under its name: its cached copy is stale.
	raw := rawClient(fake.url, nil)
	k := l2.segmentKey(last)
	if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k)}); err != nil {
		t.Fatal(err)
	}
	other := persist.EncodeSegment(nil, leader, []tx.Transaction{{Version: last, Operations: []tx.Operation{{Type: tx.OpDelete, Key: []byte("replaced")}}}})
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: bytes.NewReader(other)}); err != nil {
		t.Fatal(err)
	}
	// And tear the cache file's end.
	files, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "*"+cacheSuffix))
	if len(files) == 0 {
		t.Fatal("no cache file")
	}
	f, err := os.OpenFile(files[len(files)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 3, 'x'})
	f.Close()

	l3 := restart()
	if n := readAll(l3); n != 100 {
		t.Fatalf("read %d segments", n)
	}
	segs, err := l3.ReadFrom(ctx, last-1, 1<<20)
	if err != nil || len(segs) != 1 || !bytes.Equal(segs[0], other) {
		t.Fatalf("the replaced segment read back from the cache, not S3 (%v)", err)
	}
}
