package s3log

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/logtest"
)

// scriptedS3 is the fake S3 behind a handler that injects faults into
// segment requests in an exact order rather than at random rates, so that
// a test reaches one interleaving every time: a segment PUT applied whose
// answer is dropped, then read-back GETs answered 503 SlowDown.
type scriptedS3 struct {
	fake *fakes3.Server
	url  string

	mu sync.Mutex
	// putDrops: the next this many segment PUTs take effect and then have
	// their connection closed without an answer.
	putDrops int
	// getFails: the next this many segment GETs are answered 503 SlowDown
	// without effect; -1: every one.
	getFails int
	gets     int // segment GETs seen
}

func startScripted(t *testing.T) *scriptedS3 {
	t.Helper()
	fake, err := fakes3.New(fakes3.Options{Buckets: []string{testBucket}})
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedS3{fake: fake}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

func (s *scriptedS3) set(putDrops, getFails int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putDrops, s.getFails = putDrops, getFails
}

func (s *scriptedS3) segmentGets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

func (s *scriptedS3) serve(w http.ResponseWriter, r *http.Request) {
	segment := strings.Contains(r.URL.Path, "/log/")
	s.mu.Lock()
	drop := segment && r.Method == http.MethodPut && s.putDrops > 0
	if drop {
		s.putDrops--
	}
	get := segment && r.Method == http.MethodGet
	if get {
		s.gets++
	}
	fail := get && s.getFails != 0
	if fail && s.getFails > 0 {
		s.getFails--
	}
	s.mu.Unlock()
	switch {
	case drop:
		s.fake.ServeHTTP(&discardAnswer{header: http.Header{}}, r)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	case fail:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
	default:
		s.fake.ServeHTTP(w, r)
	}
}

type discardAnswer struct{ header http.Header }

func (d *discardAnswer) Header() http.Header         { return d.header }
func (d *discardAnswer) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardAnswer) WriteHeader(int)             {}

func openScripted(t *testing.T, s *scriptedS3) *Log {
	t.Helper()
	cfg := testConfig(s.url)
	cfg.RetryMaxAttempts = 2           // a GetObject call is two attempts
	cfg.OperationTimeout = time.Minute // generous: nothing here waits for it
	l := openLog(t, cfg)
	t.Cleanup(func() { l.Close() })
	if _, err := l.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), logtest.Segment(0, 0, "a")); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAmbiguousPutWithFailingReadBackIsNotFenced: a segment PUT is stored
// but its answer is dropped; the SDK's retry gets 412, and the read-back
// GETs that would show the 412 is our own write fail for a while (503).
// The Append must keep reading back and succeed, not depose the server
// (found by tests/s3fault TestS3FaultsUnderLoad: "append segment 540:
// segment exists: fenced by another leader" with no other server).
func TestAmbiguousPutWithFailingReadBackIsNotFenced(t *testing.T) {
	s := startScripted(t)
	l := openScripted(t, s)
	// Three failing GETs: the first GetObject call (two attempts) and the
	// first attempt of the second fail; the read-back must go on.
	s.set(1, 3)
	if err := l.Append(context.Background(), logtest.Segment(1, 3, "a")); err != nil {
		t.Fatalf("Append whose stored PUT lost its answer, read back through 503s: %v, want nil", err)
	}
	if n := s.segmentGets(); n < 4 {
		t.Fatalf("%d segment GETs; want the read-back to get past the 3 failing ones", n)
	}
	if l.Stats().AmbiguousResolved == 0 {
		t.Fatal("the ambiguous write was not resolved by reading back")
	}
}

// TestRetriedAppendWithUnreadableReadBackIsNotFenced: an Append's PUT is
// stored and every answer lost, and S3 answers no read: the Append fails,
// ambiguous. The pipeline's retry gets 412 and still cannot read the
// object back: a transient failure, not ErrFenced. Once reads work, the
// next retry finds its own segment and succeeds.
func TestRetriedAppendWithUnreadableReadBackIsNotFenced(t *testing.T) {
	s := startScripted(t)
	l := openScripted(t, s)
	ctx := context.Background()
	seg := logtest.Segment(1, 3, "a")
	s.set(2, -1) // both PUT attempts stored and dropped; no GET answers
	err := l.Append(ctx, seg)
	if err == nil || errors.Is(err, persist.ErrFenced) {
		t.Fatalf("Append with every answer lost: %v, want a transient error", err)
	}
	// The retry: its PUT gets 412 (the first Append's object).
	err = l.Append(ctx, seg)
	if err == nil || errors.Is(err, persist.ErrFenced) {
		t.Fatalf("retried Append, 412 and no read-back: %v, want a transient error, not fenced", err)
	}
	if l.Stats().Fenced != 0 {
		t.Fatalf("%d Appends counted as fenced", l.Stats().Fenced)
	}
	s.set(0, 0)
	if err := l.Append(ctx, seg); err != nil {
		t.Fatalf("retried Append once reads work: %v, want nil (our own segment)", err)
	}
}

// TestAmbiguousPutOverAnotherLeaderIsFenced keeps the safety half: the
// same interleaving (answer dropped, 412, read-back GETs failing for a
// while) over another leader's segment at that name is ErrFenced once the
// read-back gets through.
func TestAmbiguousPutOverAnotherLeaderIsFenced(t *testing.T) {
	s := startScripted(t)
	l := openScripted(t, s)
	ctx := context.Background()
	raw := rawClient(s.url, nil)
	key := testPrefix + "/log/" + string(persist.AppendSegmentName(nil, 1))
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		Body: strings.NewReader(string(logtest.Segment(1, 3, "b")))}); err != nil {
		t.Fatal(err)
	}
	s.set(1, 3)
	if err := l.Append(ctx, logtest.Segment(1, 3, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("Append over another leader's segment: %v, want ErrFenced", err)
	}
}
