package s3log

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

// s3CompatTarget is an independent S3 implementation (versitygw in CI, see
// scripts/s3compat.sh) named by the environment; the zero value means the
// compatibility tests skip.
type s3CompatTarget struct {
	endpoint, bucket, access, secret string
	// runID keeps this run's keys apart from earlier runs against the same
	// bucket, so a kept-alive server needs no cleaning between runs.
	runID string
}

func s3CompatFromEnv(t *testing.T) s3CompatTarget {
	t.Helper()
	target := s3CompatTarget{
		endpoint: os.Getenv("WEASELDB_S3COMPAT_ENDPOINT"),
		bucket:   os.Getenv("WEASELDB_S3COMPAT_BUCKET"),
		access:   os.Getenv("WEASELDB_S3COMPAT_ACCESS"),
		secret:   os.Getenv("WEASELDB_S3COMPAT_SECRET"),
	}
	if target.endpoint == "" {
		t.Skip("WEASELDB_S3COMPAT_ENDPOINT not set: run `make test-s3compat` (scripts/s3compat.sh starts versitygw)")
	}
	if target.bucket == "" || target.access == "" || target.secret == "" {
		t.Fatal("WEASELDB_S3COMPAT_ENDPOINT is set: WEASELDB_S3COMPAT_BUCKET, _ACCESS and _SECRET must be too")
	}
	var id [6]byte
	rand.Read(id[:])
	target.runID = time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(id[:])
	return target
}

// prefix is the unique key prefix of one subtest: run and test name.
func (c s3CompatTarget) prefix(t *testing.T) string {
	return "s3compat/" + c.runID + "/" + strings.ReplaceAll(t.Name(), "/", ".")
}

func (c s3CompatTarget) config(prefix string) Config {
	return Config{
		Bucket: c.bucket, Prefix: prefix, Endpoint: c.endpoint, Region: "us-east-1",
		UsePathStyle: true, AccessKeyID: c.access, SecretAccessKey: c.secret,
		RetryMaxBackoff: 50 * time.Millisecond,
	}
}

// storage is logtest.Storage on the target under prefix. Damage goes
// through a plain SDK client, as an operator's tool would.
func (c s3CompatTarget) storage(prefix string) logtest.Storage {
	raw := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(c.endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(c.access, c.secret, "")})
	cfg := c.config(prefix)
	return logtest.Storage{
		Open: func(t *testing.T) persist.Log { return openLog(t, cfg) },
		Damage: func(t *testing.T, first tx.Version, damage func([]byte) []byte) {
			key := prefix + "/log/" + string(persist.AppendSegmentName(nil, first))
			ctx := context.Background()
			out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("Damage: get %s: %v", key, err)
			}
			old, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatalf("Damage: read %s: %v", key, err)
			}
			if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key),
				Body: bytes.NewReader(damage(old))}); err != nil {
				t.Fatalf("Damage: put %s: %v", key, err)
			}
		},
	}
}

// TestS3Compat runs the persist.Log conformance suite, and fencing between
// two Logs, against an independent S3 implementation: strict SigV4, real
// If-None-Match, ListObjectsV2 paging and DeleteObjects as another team
// implemented them, not as our fake does. Skipped unless
// WEASELDB_S3COMPAT_ENDPOINT is set; `make test-s3compat` sets it.
//
// What versitygw v1.8.0 (posix backend) was checked to do, as AWS does:
// PutObject with If-None-Match: * on an existing key answers 412
// PreconditionFailed, decided under a per-key publish lock (so FencingRace
// is a real race, one winner); any other If-None-Match value on PutObject
// is 501 NotImplemented; a bad signature is 403 SignatureDoesNotMatch; a
// request without x-amz-content-sha256 is 400. ListObjectsV2 pages at 1000
// keys. PutObject with If-Match: <ETag> replaces the object only while its
// ETag is that one and answers 412 otherwise, which the lease relies on
// (LeaseConditional). No conformance case needed a skip.
func TestS3Compat(t *testing.T) {
	target := s3CompatFromEnv(t)
	t.Run("Conformance", func(t *testing.T) {
		logtest.Run(t, func(t *testing.T) logtest.Storage {
			return target.storage(target.prefix(t))
		})
	})
	t.Run("FencingTwoInstances", func(t *testing.T) {
		testCompatFencing(t, target.config(target.prefix(t)))
	})
	t.Run("ListPaging", func(t *testing.T) {
		testCompatListPaging(t, target.config(target.prefix(t)))
	})
	t.Run("LeaseConditional", func(t *testing.T) {
		testLeaseConditional(t, target.config(target.prefix(t)))
	})
	t.Run("Follow", func(t *testing.T) {
		testFollow(t, target.config(target.prefix(t)))
	})
}

// testCompatFencing: two Logs on one prefix; the second recovers and claims
// the next version; the first learns it is deposed on its next write; the
// second's log is what a restart recovers.
func testCompatFencing(t *testing.T, cfg Config) {
	ctx := context.Background()
	a := openLog(t, cfg)
	defer a.Close()
	if _, err := a.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(ctx, logtest.Segment(0, 0, "a")); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(ctx, logtest.Segment(1, 3, "a")); err != nil {
		t.Fatal(err)
	}
	b := openLog(t, cfg)
	defer b.Close()
	rec, err := b.Recover(ctx)
	if err != nil || rec.Last() != 3 {
		t.Fatalf("b recovered %+v, %v; want last 3", rec, err)
	}
	if err := b.Append(ctx, logtest.Segment(4, 4, "b")); err != nil {
		t.Fatalf("b claims leadership: %v", err)
	}
	if err := a.Append(ctx, logtest.Segment(4, 9, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("a after b's claim: %v, want ErrFenced", err)
	}
	if a.Stats().Fenced != 1 {
		t.Fatalf("a counted %d fenced appends, want 1", a.Stats().Fenced)
	}
	if err := b.Append(ctx, logtest.Segment(5, 6, "b")); err != nil {
		t.Fatalf("b continues: %v", err)
	}
	b.Close()
	c := openLog(t, cfg)
	defer c.Close()
	rec, err = c.Recover(ctx)
	if err != nil || rec.Last() != 6 || len(rec.Segments) != 4 || len(rec.Discarded) != 0 {
		t.Fatalf("restart recovered %+v, %v; want 4 segments to 6, none discarded", rec, err)
	}
}

// testCompatListPaging stores more segments than one ListObjectsV2 page
// (1000 keys) so that Recover must follow continuation tokens, then
// truncates them in more than one DeleteObjects batch, counting the
// requests. Short mode uses fewer segments: one page, one batch.
func testCompatListPaging(t *testing.T, cfg Config) {
	n := 1100
	if testing.Short() {
		n = 60
	}
	ctx := context.Background()
	cfg.MaxInFlight = 16
	l := openLog(t, cfg)
	defer l.Close()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, logtest.Segment(0, 0, "p")); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, n)
	sem := make(chan struct{}, cfg.MaxInFlight)
	for v := tx.Version(1); v <= tx.Version(n); v++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- l.Append(ctx, logtest.Segment(v, v, "p"))
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l2 := openLog(t, cfg)
	defer l2.Close()
	rec, err := l2.Recover(ctx)
	if err != nil || rec.Last() != tx.Version(n) || len(rec.Segments) != n+1 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered %d segments to %d, discarded %d, %v; want %d to %d", len(rec.Segments), rec.Last(), len(rec.Discarded), err, n+1, n)
	}
	// One ListObjectsV2 page holds at most 1000 keys, one DeleteObjects
	// batch at most 1000: more segments than that must take several.
	// Recover also lists the truncation floor markers (one more page).
	pagesWant := (n+1+999)/1000 + 1
	if got := l2.Stats().Op(OpList).Requests; got != uint64(pagesWant) {
		t.Fatalf("Recover of %d segments made %d ListObjectsV2 requests, want %d", n+1, got, pagesWant)
	}
	if oldest, err := l2.Truncate(ctx, tx.Version(n)); err != nil || oldest != tx.Version(n-1) {
		t.Fatalf("Truncate(%d) = %d, %v; want %d", n, oldest, err, n-1)
	}
	if got, want := l2.Stats().Op(OpDelete).Requests, uint64((n+999)/1000); got != want {
		t.Fatalf("Truncate of %d segments made %d DeleteObjects requests, want %d", n, got, want)
	}
	l2.Close()
	l3 := openLog(t, cfg)
	defer l3.Close()
	rec, err = l3.Recover(ctx)
	if err != nil || len(rec.Segments) != 1 || rec.Last() != tx.Version(n) {
		t.Fatalf("after truncation recovered %+v, %v; want only segment %d", rec.Segments, err, n)
	}
}
