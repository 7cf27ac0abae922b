package s3log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

const (
	testBucket = "weasel-log"
	testPrefix = "cluster-a/db"
)

// fakeS3 is one fake S3 server on a loopback port.
type fakeS3 struct {
	srv *fakes3.Server
	url string
}

func startFake(t testing.TB) *fakeS3 {
	t.Helper()
	srv, err := fakes3.New(fakes3.Options{Buckets: []string{testBucket}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := fakes3.ListenTCP(srv, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return &fakeS3{srv: srv, url: ts.URL}
}

func testConfig(endpoint string) Config {
	return Config{
		Bucket: testBucket, Prefix: testPrefix, Endpoint: endpoint, Region: "us-east-1",
		UsePathStyle: true, AccessKeyID: "AKIDTEST", SecretAccessKey: "secret",
		RetryMaxBackoff: 20 * time.Millisecond,
	}
}

func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// rawClient talks to the same storage behind the Log's back (Damage).
func rawClient(endpoint string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *s3.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if dial != nil {
		transport.DialContext = dial
	}
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		HTTPClient: &http.Client{Transport: transport},
		// Damage runs while faults are injected: retry through them.
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 30
			o.MaxBackoff = 10 * time.Millisecond
			o.RateLimiter = ratelimit.None
		}),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")})
}

func storage(t *testing.T, endpoint string, cfg func() Config) logtest.Storage {
	raw := rawClient(endpoint, cfg().DialContext)
	return logtest.Storage{
		Open: func(t *testing.T) persist.Log { return openLog(t, cfg()) },
		Damage: func(t *testing.T, first tx.Version, damage func([]byte) []byte) {
			key := testPrefix + "/log/" + string(persist.AppendSegmentName(nil, first))
			ctx := context.Background()
			out, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("Damage: get %s: %v", key, err)
			}
			old, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
				Body: bytes.NewReader(damage(old))}); err != nil {
				t.Fatalf("Damage: put %s: %v", key, err)
			}
		},
	}
}

func TestConformanceTCP(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Storage {
		f := startFake(t)
		return storage(t, f.url, func() Config { return testConfig(f.url) })
	})
}

// TestConformanceUnderFaults runs the whole suite while a fifth of all
// requests fail with 503 SlowDown and latency is random: the retryer must
// hide all of it. (Dropped connections are left to TestFaultInjectionOrder:
// the suite rewrites a segment verbatim, which a read-back after a dropped
// connection cannot tell from our own write; see the package doc.)
func TestConformanceUnderFaults(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Storage {
		f := startFake(t)
		f.srv.Faults().Set(fakes3.Fault{SlowDownRate: 0.2, LatencyJitter: 2 * time.Millisecond})
		return storage(t, f.url, func() Config {
			c := testConfig(f.url)
			c.RetryMaxAttempts = 30
			return c
		})
	})
}

func TestConfigValidation(t *testing.T) {
	_, err := Open(context.Background(), Config{MaxInFlight: 32, MaxConnsPerHost: 4, Endpoint: "ftp://x", RetryMaxAttempts: -1})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"bucket is required", "max conns per host 4 < max in flight 32", "ftp://x", "retry max attempts -1"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestFaultInjectionOrder appends a long run of segments concurrently under
// 20% 503s, random latency and dropped connections, then checks that every
// acknowledged version is stored exactly once, in order.
func TestFaultInjectionOrder(t *testing.T) {
	f := startFake(t)
	cfg := testConfig(f.url)
	cfg.RetryMaxAttempts = 30
	cfg.MaxInFlight = 8
	l := openLog(t, cfg)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, logtest.Segment(0, 0, "f")); err != nil {
		t.Fatal(err)
	}
	f.srv.Faults().Set(fakes3.Fault{SlowDownRate: 0.2, Latency: time.Millisecond, LatencyJitter: 5 * time.Millisecond,
		DropRate: 0.03, DropAfterApplyRate: 0.05})
	segments := 120
	if testing.Short() {
		segments = 40
	}
	const width = 5
	var wg sync.WaitGroup
	errs := make(chan error, segments)
	sem := make(chan struct{}, cfg.MaxInFlight)
	for i := range segments {
		first := tx.Version(i*width + 1)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := l.Append(ctx, logtest.Segment(first, first+width-1, "f")); err != nil {
				errs <- fmt.Errorf("Append %d: %w", first, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f.srv.Faults().Clear()
	st := l.Stats()
	if st.Retries == 0 || f.srv.Faults().Injected() == 0 {
		t.Fatalf("no faults were exercised: %+v", st)
	}
	t.Logf("retries %d, ambiguous writes resolved %d, injected faults %d", st.Retries, st.AmbiguousResolved, f.srv.Faults().Injected())
	l.Close()

	l2 := openLog(t, cfg)
	defer l2.Close()
	rec, err := l2.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := tx.Version(segments * width)
	if rec.Last() != last || len(rec.Segments) != segments+1 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered %d segments to %d, discarded %d; want %d to %d", len(rec.Segments), rec.Last(), len(rec.Discarded), segments+1, last)
	}
	var got []tx.Version
	after := tx.Version(0)
	for {
		segs, err := l2.ReadFrom(ctx, after, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) == 0 {
			break
		}
		for _, seg := range segs {
			_, txns, err := persist.DecodeSegment(seg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range txns {
				got = append(got, x.Version)
			}
			h, _ := persist.DecodeSegmentHeader(seg)
			after = h.Last
		}
	}
	if len(got) != int(last) {
		t.Fatalf("read %d versions, want %d", len(got), last)
	}
	for i, v := range got {
		if v != tx.Version(i+1) {
			t.Fatalf("version #%d is %d: lost, duplicated or out of order", i, v)
		}
	}
}

// TestFencingTwoInstances: two Logs on one bucket/prefix; the second claims
// leadership; the first learns it is deposed on its next write.
func TestFencingTwoInstances(t *testing.T) {
	f := startFake(t)
	ctx := context.Background()
	a := openLog(t, testConfig(f.url))
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
	b := openLog(t, testConfig(f.url))
	defer b.Close()
	rec, err := b.Recover(ctx)
	if err != nil || rec.Last() != 3 {
		t.Fatalf("b recovered %v, %v", rec, err)
	}
	if err := b.Append(ctx, logtest.Segment(4, 4, "b")); err != nil {
		t.Fatalf("b claims leadership: %v", err)
	}
	if err := a.Append(ctx, logtest.Segment(4, 9, "a")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("a after b's claim: %v, want ErrFenced", err)
	}
	if a.Stats().Fenced != 1 {
		t.Fatalf("a counted %d fenced appends", a.Stats().Fenced)
	}
	// A 412 that answers a retry of our own write is not fencing: the
	// first attempt is stored, then its answer is lost.
	before := f.srv.Faults().Requests(fakes3.OpPutObject)
	f.srv.Faults().Set(fakes3.Fault{DropAfterApplyRate: 1}, fakes3.OpPutObject)
	done := make(chan error, 1)
	go func() { done <- b.Append(ctx, logtest.Segment(5, 6, "b")) }()
	for f.srv.Faults().Requests(fakes3.OpPutObject) < before+2 {
		time.Sleep(time.Millisecond)
	}
	f.srv.Faults().Clear()
	if err := <-done; err != nil {
		t.Fatalf("b's write whose answer was lost: %v", err)
	}
	if b.Stats().AmbiguousResolved == 0 {
		t.Fatal("ambiguous write not resolved by reading back")
	}
}

func TestStatsAndCallback(t *testing.T) {
	f := startFake(t)
	var mu sync.Mutex
	seen := map[Op]int{}
	cfg := testConfig(f.url)
	cfg.OnRequest = func(op Op, elapsed time.Duration, err error) {
		mu.Lock()
		seen[op]++
		mu.Unlock()
	}
	l := openLog(t, cfg)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seg := range [][]byte{logtest.Segment(0, 0, "s"), logtest.Segment(1, 1, "s"), logtest.Segment(2, 2, "s")} {
		if err := l.Append(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.ReadFrom(ctx, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Truncate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	// Puts: three segments and the truncation floor; lists: segments and
	// floors at recovery, floors after the truncation; GETs: the recovery
	// checkpoint (none yet) and the two segments read.
	if st.Op(OpPut).Requests != 4 || st.Op(OpGet).Requests != 3 || st.Op(OpList).Requests != 3 || st.Op(OpDelete).Requests != 1 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[OpPut] != 4 || seen[OpDelete] != 1 {
		t.Fatalf("callback saw %v", seen)
	}
}

// TestConformanceNetpollLocal runs the suite against the fake S3 hosted on
// netpoll, reached through in-process local connections (no port).
func TestConformanceNetpollLocal(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Storage {
		srv, err := fakes3.New(fakes3.Options{Buckets: []string{testBucket}})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := fakes3.ListenNetpoll(srv, "", netpoll.Config{Reactors: 1, DisableThreadPinning: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		s := storage(t, ns.URL, func() Config {
			c := testConfig(ns.URL)
			c.DialContext = ns.DialContext
			return c
		})
		return s
	})
}

// TestRetriedAppendAfterTimeoutIsOurs: an Append times out while S3 holds
// the PUT, S3 then stores it; the pipeline's retry of the same segment is a
// new Append whose PUT gets 412. That 412 is our own earlier write, not
// another leader: the retry must succeed (found by tests/s3fault, where the
// server deposed itself after an S3 outage). An identical rewrite with no
// ambiguous history stays ErrFenced (conformance).
func TestRetriedAppendAfterTimeoutIsOurs(t *testing.T) {
	f := startFake(t)
	cfg := testConfig(f.url)
	cfg.OperationTimeout = 300 * time.Millisecond
	cfg.RetryMaxAttempts = 1
	l := openLog(t, cfg)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, logtest.Segment(0, 0, "a")); err != nil {
		t.Fatal(err)
	}
	seg := logtest.Segment(1, 3, "a")
	f.srv.Faults().Pause()
	err := l.Append(ctx, seg)
	if err == nil || errors.Is(err, persist.ErrFenced) {
		f.srv.Faults().Resume()
		t.Fatalf("Append during the outage: %v, want a timeout", err)
	}
	f.srv.Faults().Resume() // the held PUT is stored now (or soon)
	raw := rawClient(f.url, nil)
	key := testPrefix + "/log/" + string(persist.AppendSegmentName(nil, 1))
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Skip("the fake did not store the held PUT after Resume; nothing to resolve")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Append(ctx, seg); err != nil {
		t.Fatalf("retried Append of our own stored segment: %v, want nil", err)
	}
	// A different segment at a name that exists is still fenced.
	if err := l.Append(ctx, logtest.Segment(1, 3, "b")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("Append over an existing segment: %v, want ErrFenced", err)
	}
}

// TestOpenNoSuchBucket: a missing bucket fails Open at once with
// ErrNoSuchBucket, naming the bucket and the endpoint, after one request
// (no retries).
func TestOpenNoSuchBucket(t *testing.T) {
	f := startFake(t)
	cfg := testConfig(f.url)
	cfg.Bucket = "no-such-bucket"
	cfg.RetryMaxAttempts = 8
	_, err := Open(context.Background(), cfg)
	if !errors.Is(err, ErrNoSuchBucket) || !strings.Contains(err.Error(), `"no-such-bucket"`) || !strings.Contains(err.Error(), f.url) {
		t.Fatalf("Open with a missing bucket: %v, want ErrNoSuchBucket naming the bucket and %s", err, f.url)
	}
	if n := f.srv.Faults().Requests(fakes3.OpBucket); n != 1 {
		t.Errorf("%d bucket requests, want 1 (no retry)", n)
	}
	l := openLog(t, testConfig(f.url))
	l.Close()
}

// TestSDKLogsThroughSlog: with an endpoint set, the SDK does not ask EC2
// instance metadata, and whatever it logs arrives as slog records.
func TestSDKLogsThroughSlog(t *testing.T) {
	f := startFake(t)
	var buf bytes.Buffer
	cfg := testConfig(f.url)
	cfg.AccessKeyID, cfg.SecretAccessKey = "", "" // the default chain, without IMDS
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	_, err := Open(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Fatalf("Open without credentials: %v, want a refusal naming the missing credentials", err)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), "169.254.169.254") || strings.Contains(strings.ToLower(err.Error()), "ec2 imds") && !strings.Contains(err.Error(), "disabled") {
		t.Errorf("the SDK asked instance metadata: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line != "" && !strings.HasPrefix(line, "{") {
			t.Errorf("a log line that is not slog JSON: %q", line)
		}
	}
	var rec bytes.Buffer
	sdkLogger{slog.New(slog.NewJSONHandler(&rec, nil))}.Logf(logging.Warn, "x %d", 1)
	if !strings.Contains(rec.String(), `"msg":"s3log: aws sdk: x 1"`) || !strings.Contains(rec.String(), `"level":"WARN"`) {
		t.Errorf("sdkLogger wrote %q", rec.String())
	}
}
