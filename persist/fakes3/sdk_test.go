package fakes3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/weaseldb/weaseldb/netpoll"
)

const testBucket = "weasel-test"

// hosting is how a test reaches the fake server.
type hosting int

const (
	hostNetHTTP      hosting = iota // net/http on a loopback port
	hostNetpollTCP                  // netpoll on a loopback port
	hostNetpollLocal                // netpoll through local connections
)

func (h hosting) String() string {
	return [...]string{"net-http", "netpoll-tcp", "netpoll-local"}[h]
}

// endpoint is where a client finds the server.
type endpoint struct {
	URL  string
	dial func(ctx context.Context, network, addr string) (net.Conn, error) // nil: TCP
}

// startServer runs a fake S3 with one bucket, hosted as h.
func startServer(t testing.TB, opts Options, hs ...hosting) (*Server, *endpoint) {
	t.Helper()
	h := hostNetHTTP
	if len(hs) > 0 {
		h = hs[0]
	}
	if opts.Buckets == nil {
		opts.Buckets = []string{testBucket}
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	switch h {
	case hostNetHTTP:
		ts, err := ListenTCP(srv, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ts.Close() })
		return srv, &endpoint{URL: ts.URL}
	default:
		addr := ""
		if h == hostNetpollTCP {
			addr = "127.0.0.1:0"
		}
		ns, err := ListenNetpoll(srv, addr, netpoll.Config{Reactors: 1, DisableThreadPinning: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		e := &endpoint{URL: ns.URL}
		if h == hostNetpollLocal {
			e.dial = ns.DialContext
		}
		return srv, e
	}
}

// TestSDKHostings runs the SDK tests on every hosting.
func TestSDKHostings(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h hosting)
	}{
		{"Buckets", testSDKBuckets},
		{"ObjectLifecycle", testSDKObjectLifecycle},
		{"ConditionalPut", testSDKConditionalPut},
		{"RangedGet", testSDKRangedGet},
		{"ChecksumMismatch", testSDKChecksumMismatch},
		{"ListObjectsV2", testSDKListObjectsV2},
		{"DeleteObjects", testSDKDeleteObjects},
	}
	for _, h := range []hosting{hostNetHTTP, hostNetpollTCP, hostNetpollLocal} {
		t.Run(h.String(), func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
			}
		})
	}
}

// schemeRewriter sends https requests as plain http: the SDK then behaves
// as over TLS (aws-chunked bodies with trailing checksums) while the test
// server speaks plain HTTP (see S3-NOTES.md).
type schemeRewriter struct{ next http.RoundTripper }

func (s schemeRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme = "http"
	return s.next.RoundTrip(r)
}

type clientConfig struct {
	https    bool // use the aws-chunked path
	attempts int  // 0: one attempt (errors surface unretried)
}

func newClient(t testing.TB, e *endpoint, cc clientConfig) *s3.Client {
	t.Helper()
	url := e.URL
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if e.dial != nil {
		transport.DialContext = e.dial
	}
	opts := s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
		HTTPClient:   &http.Client{Transport: transport},
		// What config.LoadDefaultConfig selects by default (s3.New alone
		// leaves them unset, which means "when required").
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}
	attempts := max(cc.attempts, 1)
	opts.Retryer = retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = attempts
		o.MaxBackoff = 20 * time.Millisecond // keep retried tests fast
	})
	if cc.https {
		opts.BaseEndpoint = aws.String(strings.Replace(url, "http://", "https://", 1))
		opts.HTTPClient = &http.Client{Transport: schemeRewriter{next: transport}}
	}
	return s3.New(opts)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func md5ETag(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func testSDKBuckets(t *testing.T, h hosting) {
	_, ts := startServer(t, Options{}, h)
	c := newClient(t, ts, clientConfig{})
	ctx := context.Background()

	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("HeadBucket existing: %v", err)
	}
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("missing-bucket")})
	if httpStatus(err) != http.StatusNotFound {
		t.Fatalf("HeadBucket missing: want 404, got %v", err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("second-bucket")}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("second-bucket")})
	var owned *types.BucketAlreadyOwnedByYou
	if !errors.As(err, &owned) {
		t.Fatalf("CreateBucket twice: want BucketAlreadyOwnedByYou, got %v", err)
	}
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("Bad_Name")})
	if apiCode(err) != "InvalidBucketName" {
		t.Fatalf("CreateBucket bad name: got %v", err)
	}
	lb, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatalf("ListBuckets: %v", err)
	}
	var names []string
	for _, b := range lb.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	if fmt.Sprint(names) != "[second-bucket weasel-test]" {
		t.Fatalf("ListBuckets: got %v", names)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("second-bucket"), Key: aws.String("k"),
		Body: bytes.NewReader([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("second-bucket")})
	if apiCode(err) != "BucketNotEmpty" {
		t.Fatalf("DeleteBucket non-empty: got %v", err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("second-bucket"), Key: aws.String("k")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("second-bucket")}); err != nil {
		t.Fatalf("DeleteBucket: %v", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("second-bucket"), Key: aws.String("k"),
		Body: bytes.NewReader([]byte("x"))})
	var nsb *types.NoSuchBucket
	if !errors.As(err, &nsb) && apiCode(err) != "NoSuchBucket" {
		t.Fatalf("PutObject into deleted bucket: got %v", err)
	}
}

func testSDKObjectLifecycle(t *testing.T, h hosting) {
	for _, https := range []bool{false, true} {
		t.Run(fmt.Sprintf("aws-chunked=%v", https), func(t *testing.T) {
			_, ts := startServer(t, Options{}, h)
			c := newClient(t, ts, clientConfig{https: https})
			ctx := context.Background()
			data := bytes.Repeat([]byte("weasel "), 1000)
			key := "dir/sub dir/ünïcode+key?&=%"
			put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
				Body: bytes.NewReader(data), ContentType: aws.String("application/x-weasel")})
			if err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			if aws.ToString(put.ETag) != md5ETag(data) {
				t.Fatalf("ETag %s, want %s", aws.ToString(put.ETag), md5ETag(data))
			}
			get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("GetObject: %v", err)
			}
			got, err := io.ReadAll(get.Body)
			get.Body.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("GetObject body: %d bytes, err %v", len(got), err)
			}
			if aws.ToString(get.ContentType) != "application/x-weasel" || aws.ToString(get.ChecksumCRC32) == "" {
				t.Fatalf("GetObject: content type %q, crc32 %q", aws.ToString(get.ContentType), aws.ToString(get.ChecksumCRC32))
			}
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
			if err != nil || aws.ToInt64(head.ContentLength) != int64(len(data)) || aws.ToString(head.ETag) != md5ETag(data) {
				t.Fatalf("HeadObject: %+v, %v", head, err)
			}
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err != nil {
				t.Fatalf("DeleteObject: %v", err)
			}
			_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
			var nsk *types.NoSuchKey
			if !errors.As(err, &nsk) {
				t.Fatalf("GetObject deleted: want NoSuchKey, got %v", err)
			}
			_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
			var nf *types.NotFound
			if !errors.As(err, &nf) {
				t.Fatalf("HeadObject deleted: want NotFound, got %v", err)
			}
			_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("no-such-bucket"), Key: aws.String(key)})
			if apiCode(err) != "NoSuchBucket" {
				t.Fatalf("GetObject missing bucket: got %v", err)
			}
		})
	}
}

// TestSDKAWSChunkedUploads drives the aws-chunked paths of the SDK: a known
// length (one chunk plus a CRC32 trailer) and an unseekable body of unknown
// length (64 KiB chunks inside Transfer-Encoding: chunked).
func TestSDKAWSChunkedUploads(t *testing.T) {
	srv, err := New(Options{Buckets: []string{testBucket}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []http.Header
	recording := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
		}
		srv.ServeHTTP(w, r)
	})
	ts, err := listenTCP(recording, srv.log, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })

	c := newClient(t, &endpoint{URL: ts.URL}, clientConfig{https: true})
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes: several 64 KiB chunks
	cases := []struct {
		name string
		body io.Reader
		want []byte
	}{
		{"known-length", bytes.NewReader(big), big},
		{"unknown-length", io.MultiReader(bytes.NewReader(big)), big},
		{"empty", bytes.NewReader(nil), []byte{}}, // sent plain, with a checksum header
	}
	for _, tc := range cases {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(tc.name), Body: tc.body}); err != nil {
			t.Fatalf("%s: PutObject: %v", tc.name, err)
		}
		get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(tc.name)})
		if err != nil {
			t.Fatalf("%s: GetObject: %v", tc.name, err)
		}
		got, err := io.ReadAll(get.Body)
		get.Body.Close()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("%s: got %d bytes (err %v), want %d", tc.name, len(got), err, len(tc.want))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, h := range seen[:2] {
		if h.Get("x-amz-content-sha256") != "STREAMING-UNSIGNED-PAYLOAD-TRAILER" || h.Get("x-amz-trailer") == "" {
			t.Errorf("PUT %d did not use aws-chunked with a trailer: %v", i, h)
		}
	}
	if len(seen) != len(cases) {
		t.Errorf("saw %d PUTs, want %d", len(seen), len(cases))
	}
}

func testSDKConditionalPut(t *testing.T, h hosting) {
	_, ts := startServer(t, Options{}, h)
	c := newClient(t, ts, clientConfig{})
	ctx := context.Background()
	put := func(key, body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
			Body: strings.NewReader(body), IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put("seg", "first"); err != nil {
		t.Fatalf("first conditional PUT: %v", err)
	}
	err := put("seg", "second")
	if apiCode(err) != "PreconditionFailed" || httpStatus(err) != http.StatusPreconditionFailed {
		t.Fatalf("second conditional PUT: want 412 PreconditionFailed, got %v", err)
	}
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("seg")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if string(got) != "first" {
		t.Fatalf("object overwritten: %q", got)
	}

	// Racing writers: exactly one wins each key.
	const writers, keys = 8, 20
	var wins [keys]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				err := put(fmt.Sprintf("race/%02d", k), fmt.Sprintf("writer %d", w))
				switch {
				case err == nil:
					mu.Lock()
					wins[k]++
					mu.Unlock()
				case apiCode(err) != "PreconditionFailed":
					t.Errorf("writer %d key %d: %v", w, k, err)
				}
			}
		}()
	}
	wg.Wait()
	for k, n := range wins {
		if n != 1 {
			t.Errorf("key %d: %d winners, want 1", k, n)
		}
	}
}

func testSDKRangedGet(t *testing.T, h hosting) {
	for _, https := range []bool{false, true} {
		t.Run(fmt.Sprintf("https=%v", https), func(t *testing.T) {
			_, ts := startServer(t, Options{}, h)
			// Default client: response checksum validation is on
			// (WhenSupported), so a whole-object checksum on a 206 would
			// fail these reads.
			c := newClient(t, ts, clientConfig{https: https})
			ctx := context.Background()
			data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), Body: bytes.NewReader(data)}); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				rng, want, contentRange string
			}{
				{"bytes=0-9", "0123456789", "bytes 0-9/36"},
				{"bytes=30-", "uvwxyz", "bytes 30-35/36"},
				{"bytes=-4", "wxyz", "bytes 32-35/36"},
				{"bytes=34-100", "yz", "bytes 34-35/36"},
				{"bytes=-100", string(data), "bytes 0-35/36"},
			}
			for _, tc := range cases {
				get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), Range: aws.String(tc.rng)})
				if err != nil {
					t.Fatalf("%s: %v", tc.rng, err)
				}
				got, err := io.ReadAll(get.Body)
				get.Body.Close()
				if err != nil || string(got) != tc.want || aws.ToString(get.ContentRange) != tc.contentRange {
					t.Fatalf("%s: got %q range %q err %v; want %q %q", tc.rng, got, aws.ToString(get.ContentRange), err, tc.want, tc.contentRange)
				}
				if get.ChecksumCRC32 != nil {
					t.Fatalf("%s: whole-object checksum returned on a range", tc.rng)
				}
			}
			for _, rng := range []string{"bytes=36-", "bytes=100-200", "bytes=-0"} {
				_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("r"), Range: aws.String(rng)})
				if apiCode(err) != "InvalidRange" || httpStatus(err) != http.StatusRequestedRangeNotSatisfiable {
					t.Fatalf("%s: want 416 InvalidRange, got %v", rng, err)
				}
			}
		})
	}
}

func testSDKChecksumMismatch(t *testing.T, h hosting) {
	_, ts := startServer(t, Options{}, h)
	c := newClient(t, ts, clientConfig{})
	ctx := context.Background()
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"),
		Body: strings.NewReader("data"), ChecksumCRC32: aws.String("AAAAAA==")})
	if apiCode(err) != "BadDigest" {
		t.Fatalf("wrong x-amz-checksum-crc32: want BadDigest, got %v", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"),
		Body: strings.NewReader("data"), ContentMD5: aws.String("1B2M2Y8AsgTpgAmY7PhCfg==")}) // MD5 of ""
	if apiCode(err) != "BadDigest" {
		t.Fatalf("wrong Content-MD5: want BadDigest, got %v", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"),
		Body: strings.NewReader("data"), ChecksumAlgorithm: types.ChecksumAlgorithmSha256})
	if err != nil {
		t.Fatalf("SHA256 checksum: %v", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"),
		Body: strings.NewReader("data"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil {
		t.Fatalf("CRC32C checksum: %v", err)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToString(head.ChecksumCRC32C) == "" {
		t.Fatalf("HeadObject after CRC32C upload: %+v %v", head, err)
	}
}

func testSDKListObjectsV2(t *testing.T, h hosting) {
	_, ts := startServer(t, Options{}, h)
	c := newClient(t, ts, clientConfig{})
	ctx := context.Background()
	keys := []string{"a", "a/1", "a/2", "a/b/1", "b", "b/1", "c/1/x", "c/2/x", "d"}
	for _, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(in s3.ListObjectsV2Input) (out []string) {
		in.Bucket = aws.String(testBucket)
		p := s3.NewListObjectsV2Paginator(c, &in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListObjectsV2 %+v: %v", in, err)
			}
			n := 0
			for _, o := range page.Contents {
				out = append(out, aws.ToString(o.Key))
				n++
				if aws.ToInt64(o.Size) != int64(len(aws.ToString(o.Key))) {
					t.Fatalf("size of %s: %d", aws.ToString(o.Key), aws.ToInt64(o.Size))
				}
			}
			for _, cp := range page.CommonPrefixes {
				out = append(out, "P:"+aws.ToString(cp.Prefix))
				n++
			}
			if int(aws.ToInt32(page.KeyCount)) != n {
				t.Fatalf("KeyCount %d, returned %d", aws.ToInt32(page.KeyCount), n)
			}
			if in.MaxKeys != nil && n > int(*in.MaxKeys) {
				t.Fatalf("page of %d > max-keys %d", n, *in.MaxKeys)
			}
		}
		return out
	}
	cases := []struct {
		in   s3.ListObjectsV2Input
		want string
	}{
		{s3.ListObjectsV2Input{}, "[a a/1 a/2 a/b/1 b b/1 c/1/x c/2/x d]"},
		{s3.ListObjectsV2Input{MaxKeys: aws.Int32(2)}, "[a a/1 a/2 a/b/1 b b/1 c/1/x c/2/x d]"},
		{s3.ListObjectsV2Input{Prefix: aws.String("a/")}, "[a/1 a/2 a/b/1]"},
		{s3.ListObjectsV2Input{Delimiter: aws.String("/")}, "[a b d P:a/ P:b/ P:c/]"},
		{s3.ListObjectsV2Input{Delimiter: aws.String("/"), MaxKeys: aws.Int32(1)}, "[a P:a/ b P:b/ P:c/ d]"},
		{s3.ListObjectsV2Input{Prefix: aws.String("a/"), Delimiter: aws.String("/")}, "[a/1 a/2 P:a/b/]"},
		{s3.ListObjectsV2Input{StartAfter: aws.String("b")}, "[b/1 c/1/x c/2/x d]"},
		{s3.ListObjectsV2Input{StartAfter: aws.String("b"), MaxKeys: aws.Int32(3)}, "[b/1 c/1/x c/2/x d]"},
		{s3.ListObjectsV2Input{Prefix: aws.String("zz")}, "[]"},
	}
	for _, tc := range cases {
		if got := fmt.Sprint(list(tc.in)); got != tc.want {
			t.Errorf("list %+v: got %s want %s", tc.in, got, tc.want)
		}
	}
	page, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), MaxKeys: aws.Int32(3)})
	if err != nil || !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil || aws.ToInt32(page.KeyCount) != 3 {
		t.Fatalf("truncated page: %+v %v", page, err)
	}
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("nope-bucket")})
	if apiCode(err) != "NoSuchBucket" {
		t.Fatalf("list missing bucket: %v", err)
	}
}

func testSDKDeleteObjects(t *testing.T, h hosting) {
	_, ts := startServer(t, Options{}, h)
	c := newClient(t, ts, clientConfig{})
	ctx := context.Background()
	for i := range 10 {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(fmt.Sprintf("k%d", i)), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(keys ...string) []types.ObjectIdentifier {
		var out []types.ObjectIdentifier
		for _, k := range keys {
			out = append(out, types.ObjectIdentifier{Key: aws.String(k)})
		}
		return out
	}
	longKey := strings.Repeat("x", 1025)
	res, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(testBucket),
		Delete: &types.Delete{Objects: ids("k0", "k1", "missing", longKey)}})
	if err != nil {
		t.Fatalf("DeleteObjects: %v", err)
	}
	if len(res.Deleted) != 3 || len(res.Errors) != 1 || aws.ToString(res.Errors[0].Key) != longKey {
		t.Fatalf("DeleteObjects: deleted %d errors %d", len(res.Deleted), len(res.Errors))
	}
	res, err = c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(testBucket),
		Delete: &types.Delete{Objects: ids("k2", "k3"), Quiet: aws.Bool(true)}})
	if err != nil || len(res.Deleted) != 0 || len(res.Errors) != 0 {
		t.Fatalf("quiet DeleteObjects: %+v %v", res, err)
	}
	var many []string
	for i := range deleteKeysMax + 1 {
		many = append(many, fmt.Sprintf("m%d", i))
	}
	_, err = c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(testBucket), Delete: &types.Delete{Objects: ids(many...)}})
	if apiCode(err) != "MalformedXML" {
		t.Fatalf("1001 keys: want MalformedXML, got %v", err)
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	if err != nil || aws.ToInt32(out.KeyCount) != 6 {
		t.Fatalf("after deletes: %v keys, err %v", aws.ToInt32(out.KeyCount), err)
	}
}

func TestSDKFaults(t *testing.T) {
	srv, ts := startServer(t, Options{})
	c := newClient(t, ts, clientConfig{})
	ctx := context.Background()
	put := func(c *s3.Client, key string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), Body: strings.NewReader(key)})
		return err
	}
	exists := func(key string) bool {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
		return err == nil
	}

	srv.Faults().Set(Fault{SlowDownRate: 1}, OpPutObject)
	if err := put(c, "slow"); apiCode(err) != "SlowDown" || httpStatus(err) != http.StatusServiceUnavailable || exists("slow") {
		t.Fatalf("SlowDown: got %v", err)
	}
	srv.Faults().Set(Fault{InternalErrorRate: 1}, OpPutObject)
	if err := put(c, "internal"); apiCode(err) != "InternalError" || exists("internal") {
		t.Fatalf("InternalError: got %v", err)
	}
	srv.Faults().Set(Fault{DropRate: 1}, OpPutObject)
	if err := put(c, "dropped"); err == nil || exists("dropped") {
		t.Fatalf("dropped connection: got %v, exists %v", err, exists("dropped"))
	}
	srv.Faults().Set(Fault{DropAfterApplyRate: 1}, OpPutObject)
	if err := put(c, "applied"); err == nil || !exists("applied") {
		t.Fatalf("dropped after apply: got %v, exists %v", err, exists("applied"))
	}

	// Half the requests fail: the SDK's retryer gets every PUT through.
	srv.Faults().Set(Fault{SlowDownRate: 0.5})
	retrying := newClient(t, ts, clientConfig{attempts: 20})
	for i := range 10 {
		if err := put(retrying, fmt.Sprintf("retried/%d", i)); err != nil {
			t.Fatalf("retried PUT %d: %v", i, err)
		}
	}
	if srv.Faults().Injected() == 0 {
		t.Fatal("no fault was injected")
	}

	// Pause holds requests until Resume.
	srv.Faults().Clear()
	srv.Faults().Pause()
	before := srv.Faults().Requests(OpPutObject)
	done := make(chan error, 1)
	go func() { done <- put(c, "paused") }()
	for srv.Faults().Requests(OpPutObject) == before {
		select {
		case err := <-done:
			t.Fatalf("PUT finished while paused: %v", err)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("PUT finished while paused: %v", err)
	default:
	}
	srv.Faults().Resume()
	if err := <-done; err != nil {
		t.Fatalf("PUT after resume: %v", err)
	}
}

func TestDirectoryStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Options{Dir: dir, Buckets: []string{testBucket}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := ListenTCP(srv, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, &endpoint{URL: ts.URL}, clientConfig{})
	ctx := context.Background()
	keys := []string{"../../etc/passwd", "a/b/c", strings.Repeat("long", 250), "日本語"}
	for _, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: strings.NewReader("v:" + k)}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String("a/b/c")}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}

	_, ts2 := startServer(t, Options{Dir: dir, Buckets: []string{}})
	c2 := newClient(t, ts2, clientConfig{})
	out, err := c2.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(out.KeyCount) != 3 {
		t.Fatalf("after restart: %d keys", aws.ToInt32(out.KeyCount))
	}
	for _, k := range []string{keys[0], keys[2], keys[3]} {
		get, err := c2.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k)})
		if err != nil {
			t.Fatalf("get %q after restart: %v", k, err)
		}
		got, _ := io.ReadAll(get.Body)
		get.Body.Close()
		if string(got) != "v:"+k {
			t.Fatalf("get %q after restart: %q", k, got)
		}
	}
}
