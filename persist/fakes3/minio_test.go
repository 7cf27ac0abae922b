package fakes3

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// newMinioClient returns a minio-go client for the server at e (plain
// HTTP, path-style, any credentials).
func newMinioClient(t testing.TB, e *endpoint, rt http.RoundTripper) *minio.Client {
	t.Helper()
	u, err := url.Parse(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:           credentials.NewStaticV4("AKIDFAKE", "secretfake", ""),
		Secure:          false,
		Region:          "us-east-1",
		BucketLookup:    minio.BucketLookupPath,
		TrailingHeaders: true, // trailing checksums (aws-chunked trailers)
		Transport:       rt,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMinioPutObjectTrailers uploads 20 MiB with minio-go's aws-chunked
// trailer modes: signed (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER) and
// unsigned (STREAMING-UNSIGNED-PAYLOAD-TRAILER), each with a trailing
// CRC32C checksum, and reads the object back.
func TestMinioPutObjectTrailers(t *testing.T) {
	_, e := startServer(t, Options{})
	modes := &payloadModes{next: http.DefaultTransport}
	c := newMinioClient(t, e, modes)
	ctx := context.Background()
	data := randomBytes(t, 20<<20)
	for _, tc := range []struct {
		name     string
		unsigned bool
		mode     string
		sum      minio.ChecksumType
	}{
		{"signed-trailer", false, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", minio.ChecksumCRC32C},
		{"unsigned-trailer", true, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", minio.ChecksumCRC32C},
		{"unsigned-trailer-crc64nvme", true, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", minio.ChecksumCRC64NVME},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "minio/" + tc.name
			// Over plain HTTP minio-go signs each chunk and the trailer
			// unless told not to hash the content, which selects the
			// unsigned trailer mode.
			info, err := c.PutObject(ctx, testBucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
				DisableMultipart:     true,
				Checksum:             tc.sum,
				ContentType:          "application/x-test",
				DisableContentSha256: tc.unsigned,
			})
			if err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			if got := modes.last(); got != tc.mode {
				t.Fatalf("client sent x-amz-content-sha256 %q, the test wants %q", got, tc.mode)
			}
			if info.ETag != md5ETag(data)[1:len(md5ETag(data))-1] {
				t.Fatalf("ETag %q, want %s", info.ETag, md5ETag(data))
			}
			obj, err := c.GetObject(ctx, testBucket, key, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(obj)
			obj.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes (%v), want the %d uploaded", len(got), err, len(data))
			}
		})
	}
}

// payloadModes records the x-amz-content-sha256 of the last PUT, so a test
// knows which aws-chunked mode the client really used.
type payloadModes struct {
	next http.RoundTripper
	mu   sync.Mutex
	mode string
}

func (p *payloadModes) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		p.mu.Lock()
		p.mode = r.Header.Get("X-Amz-Content-Sha256")
		p.mu.Unlock()
	}
	return p.next.RoundTrip(r)
}

func (p *payloadModes) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}
