package fakes3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/minio/minio-go/v7"
)

// multipartETag is S3's ETag of a multipart object.
func multipartETag(parts ...[]byte) string {
	var md5s []byte
	for _, p := range parts {
		sum := md5.Sum(p)
		md5s = append(md5s, sum[:]...)
	}
	whole := md5.Sum(md5s)
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(whole[:]), len(parts))
}

func getAll(t testing.TB, c *s3.Client, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body) // the SDK validates the checksum while reading
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return data
}

// TestSDKManagerUpload64MiB uploads 64 MiB with the SDK's
// feature/s3/manager Uploader (multipart, parts in parallel, aws-chunked
// with trailing checksums as over TLS) and reads it back. -short (the race
// run) uploads 24 MiB: the same calls, less memory.
func TestSDKManagerUpload64MiB(t *testing.T) {
	_, e := startServer(t, Options{})
	c := newClient(t, e, clientConfig{https: true})
	size := 64 << 20
	if testing.Short() {
		size = 24 << 20
	}
	data := randomBytes(t, size)
	const partBytes = 8 << 20
	up := manager.NewUploader(c, func(u *manager.Uploader) { u.PartSize = partBytes; u.Concurrency = 3 })
	out, err := up.Upload(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("big"),
		Body: bytes.NewReader(data), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	var parts [][]byte
	for p := data; len(p) > 0; p = p[min(partBytes, len(p)):] {
		parts = append(parts, p[:min(partBytes, len(p))])
	}
	if want := multipartETag(parts...); aws.ToString(out.ETag) != want {
		t.Fatalf("ETag %s, want %s", aws.ToString(out.ETag), want)
	}
	if got := getAll(t, c, "big"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not the %d uploaded", len(got), len(data))
	}
}

// TestMinioMultipart uploads 24 MiB with minio-go in 5 MiB parts, with
// trailing CRC32C checksums.
func TestMinioMultipart(t *testing.T) {
	_, e := startServer(t, Options{})
	c := newMinioClient(t, e, http.DefaultTransport)
	data := randomBytes(t, 24<<20)
	ctx := context.Background()
	info, err := c.PutObject(ctx, testBucket, "minio-multipart", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{PartSize: 5 << 20, Checksum: minio.ChecksumCRC32C})
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if !strings.HasSuffix(info.ETag, "-5") {
		t.Fatalf("ETag %q: not a 5-part multipart ETag", info.ETag)
	}
	obj, err := c.GetObject(ctx, testBucket, "minio-multipart", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d uploaded", len(got), err, len(data))
	}
}

// mp drives the multipart calls one by one with the plain SDK client.
type mp struct {
	t   *testing.T
	c   *s3.Client
	key string
	id  string
}

func newMP(t *testing.T, c *s3.Client, key string) *mp {
	t.Helper()
	out, err := c.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	return &mp{t: t, c: c, key: key, id: aws.ToString(out.UploadId)}
}

func (m *mp) part(n int32, data []byte) types.CompletedPart {
	m.t.Helper()
	out, err := m.c.UploadPart(context.Background(), &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(m.key),
		UploadId: aws.String(m.id), PartNumber: aws.Int32(n), Body: bytes.NewReader(data)})
	if err != nil {
		m.t.Fatalf("UploadPart %d: %v", n, err)
	}
	if aws.ToString(out.ETag) != md5ETag(data) {
		m.t.Fatalf("part %d ETag %s, want %s", n, aws.ToString(out.ETag), md5ETag(data))
	}
	return types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag}
}

func (m *mp) complete(parts []types.CompletedPart, opt ...func(*s3.CompleteMultipartUploadInput)) (*s3.CompleteMultipartUploadOutput, error) {
	in := &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(m.key), UploadId: aws.String(m.id),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}
	for _, o := range opt {
		o(in)
	}
	return m.c.CompleteMultipartUpload(context.Background(), in)
}

// TestMultipartRules checks CompleteMultipartUpload's rules and the
// listing and abort calls, each answer against S3's error code.
func TestMultipartRules(t *testing.T) {
	_, e := startServer(t, Options{})
	c := newClient(t, e, clientConfig{})
	ctx := context.Background()
	big1, big2, small := randomBytes(t, 5<<20), randomBytes(t, 5<<20), []byte("the last part may be small")

	m := newMP(t, c, "rules")
	p1, p2, p3 := m.part(1, big1), m.part(2, small), m.part(3, small)
	if _, err := m.complete([]types.CompletedPart{p1, p2, p3}); apiCode(err) != "EntityTooSmall" {
		t.Fatalf("small middle part: %v", err)
	}
	if _, err := m.complete([]types.CompletedPart{p3, p1}); apiCode(err) != "InvalidPartOrder" {
		t.Fatalf("descending parts: %v", err)
	}
	if _, err := m.complete([]types.CompletedPart{p1, p1}); apiCode(err) != "InvalidPartOrder" {
		t.Fatalf("repeated part: %v", err)
	}
	wrong := p3
	wrong.ETag = aws.String(md5ETag([]byte("other")))
	if _, err := m.complete([]types.CompletedPart{p1, wrong}); apiCode(err) != "InvalidPart" {
		t.Fatalf("wrong ETag: %v", err)
	}
	missing := types.CompletedPart{PartNumber: aws.Int32(9), ETag: p3.ETag}
	if _, err := m.complete([]types.CompletedPart{p1, missing}); apiCode(err) != "InvalidPart" {
		t.Fatalf("missing part: %v", err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String("rules"),
		UploadId: aws.String(m.id), PartNumber: aws.Int32(10001), Body: bytes.NewReader(small)}); apiCode(err) != "InvalidArgument" {
		t.Fatalf("part 10001: %v", err)
	}
	p2 = m.part(2, big2) // replaces the small part 2

	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String("rules"), UploadId: aws.String(m.id)})
	if err != nil || len(lp.Parts) != 3 || aws.ToInt64(lp.Parts[1].Size) != int64(len(big2)) || aws.ToString(lp.Parts[2].ETag) != md5ETag(small) {
		t.Fatalf("ListParts: %+v %v", lp, err)
	}
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].UploadId) != m.id || aws.ToString(lu.Uploads[0].Key) != "rules" {
		t.Fatalf("ListMultipartUploads: %+v %v", lu, err)
	}

	// A conditional complete: the key exists, If-None-Match: * fails and
	// leaves the upload completable.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("rules"), Body: strings.NewReader("old")}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.complete([]types.CompletedPart{p1, p2, p3}, func(in *s3.CompleteMultipartUploadInput) { in.IfNoneMatch = aws.String("*") }); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("If-None-Match: * on an existing key: %v", err)
	}
	if _, err := m.complete([]types.CompletedPart{p1, p2, p3}, func(in *s3.CompleteMultipartUploadInput) { in.IfMatch = aws.String(md5ETag([]byte("new"))) }); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("If-Match another ETag: %v", err)
	}
	out, err := m.complete([]types.CompletedPart{p1, p2, p3}, func(in *s3.CompleteMultipartUploadInput) { in.IfMatch = aws.String(md5ETag([]byte("old"))) })
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	if want := multipartETag(big1, big2, small); aws.ToString(out.ETag) != want {
		t.Fatalf("ETag %s, want %s", aws.ToString(out.ETag), want)
	}
	if got := getAll(t, c, "rules"); !bytes.Equal(got, append(append(append([]byte{}, big1...), big2...), small...)) {
		t.Fatalf("object is not the parts in order (%d bytes)", len(got))
	}
	if _, err := m.complete([]types.CompletedPart{p1, p2, p3}); apiCode(err) != "NoSuchUpload" {
		t.Fatalf("completing twice: %v", err)
	}

	// Abort.
	m2 := newMP(t, c, "aborted")
	m2.part(1, small)
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("aborted"), UploadId: aws.String(m2.id)}); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if _, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String("aborted"), UploadId: aws.String(m2.id)}); apiCode(err) != "NoSuchUpload" {
		t.Fatalf("ListParts after abort: %v", err)
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 0 {
		t.Fatalf("ListMultipartUploads after complete and abort: %+v %v", lu.Uploads, err)
	}
}

// TestMultipartBounds: abandoned uploads cannot grow without bound.
func TestMultipartBounds(t *testing.T) {
	_, e := startServer(t, Options{UploadsMax: 2, UploadBytesMax: 1 << 20})
	c := newClient(t, e, clientConfig{})
	ctx := context.Background()
	a, _ := newMP(t, c, "a"), newMP(t, c, "b")
	_, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("c")})
	if apiCode(err) != "InvalidRequest" || !strings.Contains(err.Error(), "--max-uploads") {
		t.Fatalf("third upload past UploadsMax 2: %v", err)
	}
	a.part(1, make([]byte, 600<<10))
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String("a"),
		UploadId: aws.String(a.id), PartNumber: aws.Int32(2), Body: bytes.NewReader(make([]byte, 600<<10))})
	if apiCode(err) != "InvalidRequest" || !strings.Contains(err.Error(), "--max-upload-bytes") {
		t.Fatalf("part past UploadBytesMax: %v", err)
	}
	a.part(1, make([]byte, 100<<10)) // replacing a part frees its bytes
	a.part(2, make([]byte, 600<<10))
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("a"), UploadId: aws.String(a.id)}); err != nil {
		t.Fatal(err)
	}
	newMP(t, c, "c") // room again
}

// TestMultipartSurvivesRestart: an upload in progress, its parts and the
// completed multipart object (with its multipart ETag) survive restarts
// of a directory store.
func TestMultipartSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() (*s3.Client, func()) {
		srv, err := New(Options{Dir: dir, Buckets: []string{testBucket}})
		if err != nil {
			t.Fatal(err)
		}
		ts, err := ListenTCP(srv, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return newClient(t, &endpoint{URL: ts.URL}, clientConfig{}), func() { ts.Close() }
	}
	ctx := context.Background()
	c, stop := start()
	big, small := randomBytes(t, 5<<20), []byte("tail")
	m := newMP(t, c, "restart")
	p1, p2 := m.part(1, big), m.part(2, small)
	stop()

	c, stop = start()
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].UploadId) != m.id {
		t.Fatalf("uploads after restart: %+v %v", lu, err)
	}
	m.c = c
	out, err := m.complete([]types.CompletedPart{p1, p2})
	if err != nil {
		t.Fatalf("complete after restart: %v", err)
	}
	stop()

	c, stop = start()
	defer stop()
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("restart")})
	if err != nil || aws.ToString(head.ETag) != aws.ToString(out.ETag) || aws.ToString(head.ETag) != multipartETag(big, small) {
		t.Fatalf("multipart ETag after restart: %v, want %s (%v)", head, aws.ToString(out.ETag), err)
	}
	if got := getAll(t, c, "restart"); !bytes.Equal(got, append(append([]byte{}, big...), small...)) {
		t.Fatalf("object after restart: %d bytes", len(got))
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil || len(lu.Uploads) != 0 {
		t.Fatalf("completed upload still listed after restart: %+v %v", lu, err)
	}
}

// TestMultipartFaults: the fault switchboard covers multipart calls, and
// the SDK's Uploader gets through a server failing half its requests.
func TestMultipartFaults(t *testing.T) {
	srv, e := startServer(t, Options{})
	c := newClient(t, e, clientConfig{})
	srv.Faults().Set(Fault{SlowDownRate: 1}, OpMultipart)
	_, err := c.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("x")})
	if apiCode(err) != "SlowDown" {
		t.Fatalf("SlowDown on CreateMultipartUpload: %v", err)
	}
	srv.Faults().Set(Fault{SlowDownRate: 0.3, InternalErrorRate: 0.2}, OpMultipart)
	data := randomBytes(t, 12<<20)
	up := manager.NewUploader(newClient(t, e, clientConfig{attempts: 30}))
	if _, err := up.Upload(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("faulty"),
		Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("Upload through faults: %v", err)
	}
	srv.Faults().Clear()
	if got := getAll(t, c, "faulty"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes", len(got))
	}
	if srv.Faults().Injected() == 0 {
		t.Fatal("no fault was injected")
	}
}

// TestTransferManager uploads 64 MiB (24 under -short) with the SDK's
// feature/s3/transfermanager and downloads it with its GetObject, which
// fetches a multipart object part by part (GetObject partNumber).
func TestTransferManager(t *testing.T) {
	_, e := startServer(t, Options{})
	c := newClient(t, e, clientConfig{https: true})
	size := 64 << 20
	if testing.Short() {
		size = 24 << 20
	}
	data := randomBytes(t, size)
	tm := transfermanager.New(c, func(o *transfermanager.Options) { o.Concurrency = 3 })
	ctx := context.Background()
	up, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("tm"),
		Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("UploadObject: %v", err)
	}
	if !strings.HasSuffix(aws.ToString(up.ETag), fmt.Sprintf(`-%d"`, (size+(8<<20)-1)/(8<<20))) {
		t.Fatalf("ETag %s: not a multipart ETag of 8 MiB parts", aws.ToString(up.ETag))
	}
	get, err := tm.GetObject(ctx, &transfermanager.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("tm")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(get.Body)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes (%v), not the %d uploaded", len(got), err, len(data))
	}
	// One part by number, and a part that does not exist.
	part, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("tm"), PartNumber: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := io.ReadAll(part.Body)
	part.Body.Close()
	if !bytes.Equal(p2, data[8<<20:16<<20]) || aws.ToInt32(part.PartsCount) != int32((size+(8<<20)-1)/(8<<20)) {
		t.Fatalf("part 2: %d bytes, parts count %d", len(p2), aws.ToInt32(part.PartsCount))
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("tm"), PartNumber: aws.Int32(99)}); apiCode(err) != "InvalidPartNumber" {
		t.Fatalf("part 99: %v", err)
	}
}

// TestObjectFileVersions: files of the version before multipart (no ETag,
// no part sizes) still load, with the MD5 ETag; version 2 keeps a
// multipart ETag and part sizes, and refuses sizes that do not add up.
func TestObjectFileVersions(t *testing.T) {
	v1 := []byte(objectFileMagicV1)
	for _, f := range []string{"k", "text/plain", "CRC32", "sum"} {
		v1 = append(v1, byte(len(f)))
		v1 = append(v1, f...)
	}
	v1 = append(v1, 1) // modified: 1 ns
	v1 = append(v1, "data"...)
	o, err := decodeObjectFile(v1)
	if err != nil || o.key != "k" || string(o.data) != "data" || o.etag != md5ETag([]byte("data")) || o.partSizes != nil {
		t.Fatalf("version 1: %+v %v", o, err)
	}
	mp := &object{key: "m", data: []byte("abcdef"), etag: `"x-2"`, contentType: "t", checksumAlgo: "CRC32", checksum: "s", partSizes: []int64{4, 2}}
	o, err = decodeObjectFile(encodeObjectFile(mp))
	if err != nil || o.etag != `"x-2"` || fmt.Sprint(o.partSizes) != "[4 2]" || string(o.data) != "abcdef" {
		t.Fatalf("version 2: %+v %v", o, err)
	}
	mp.partSizes = []int64{4, 3}
	if _, err := decodeObjectFile(encodeObjectFile(mp)); err == nil {
		t.Fatal("part sizes that do not add up were accepted")
	}
}

// TestMultipartUnderEachFault: a manager upload through each kind of
// fault the switchboard injects on multipart calls (latency with jitter,
// answers delayed out of order, dropped connections without effect) still
// stores exactly the bytes sent. DropAfterApplyRate and LateApplyRate are
// left out on purpose: a CompleteMultipartUpload that took effect and lost
// its answer is retried into NoSuchUpload, which real S3 may answer too,
// and which a client settles by reading the object, not by retrying.
func TestMultipartUnderEachFault(t *testing.T) {
	faults := map[string]Fault{
		"latency":       {Latency: time.Millisecond, LatencyJitter: 5 * time.Millisecond},
		"answer jitter": {AnswerLatency: time.Millisecond, AnswerJitter: 5 * time.Millisecond},
		"drop":          {DropRate: 0.3},
	}
	for name, f := range faults {
		t.Run(name, func(t *testing.T) {
			srv, e := startServer(t, Options{})
			up := manager.NewUploader(newClient(t, e, clientConfig{attempts: 30}), func(u *manager.Uploader) { u.PartSize = 5 << 20 })
			// Until the fault has hit at least once (a drop is drawn per
			// request; a few uploads make a miss vanishingly unlikely).
			for i := 0; i < 10 && (i == 0 || f.DropRate > 0 && srv.Faults().Injected() == 0); i++ {
				key := fmt.Sprintf("k%d", i)
				data := randomBytes(t, 11<<20) // three parts of 5, 5 and 1 MiB
				srv.Faults().Set(f, OpMultipart)
				if _, err := up.Upload(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
					Body: bytes.NewReader(data)}); err != nil {
					t.Fatalf("Upload through %s: %v", name, err)
				}
				srv.Faults().Clear()
				if got := getAll(t, newClient(t, e, clientConfig{}), key); !bytes.Equal(got, data) {
					t.Fatalf("read back %d bytes, want the %d uploaded", len(got), len(data))
				}
			}
			if f.DropRate > 0 && srv.Faults().Injected() == 0 {
				t.Fatal("no connection was dropped in ten uploads")
			}
		})
	}
}
