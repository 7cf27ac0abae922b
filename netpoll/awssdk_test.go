package netpoll

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestAWSSDKThroughLocalConnection: the real aws-sdk-go-v2 S3 client, dialing
// through CreateLocalConnection, talks to an http.Handler hosted with
// HTTPHandler on the catch-all route — the way the fake S3 server runs. The
// 3 MiB PUT makes the SDK use Expect: 100-continue.
func TestAWSSDKThroughLocalConnection(t *testing.T) {
	var mu sync.Mutex
	objects := map[string][]byte{}
	var expects []string
	store := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case "PUT":
			expects = append(expects, r.Header.Get("Expect"))
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			if r.Header.Get("Content-Encoding") == "aws-chunked" || strings.Contains(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING") {
				http.Error(w, "aws-chunked not handled by this test store", 501)
				return
			}
			objects[r.URL.Path] = body
			w.Header().Set("ETag", `"etag"`)
		case "GET":
			body, ok := objects[r.URL.Path]
			if !ok {
				w.WriteHeader(404)
				io.WriteString(w, `<Error><Code>NoSuchKey</Code></Error>`)
				return
			}
			w.Write(body)
		}
	})
	srv, _ := startServer(t, Config{}, []Route{{Path: "*", Handler: HTTPHandler(store), MaxBodyBytes: 16 << 20}})
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return srv.CreateLocalConnection()
	}}
	defer tr.CloseIdleConnections()
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://fake-s3.local"),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		HTTPClient:   &http.Client{Transport: tr},
		// Plain payloads: the trailing-checksum aws-chunked encoding is the
		// fake S3 server's business, not the transport's.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	ctx := context.Background()
	body := bytes.Repeat([]byte("segment!"), 3<<17) // 3 MiB
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("bucket"), Key: aws.String("log/00000000000000000001"),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("log/00000000000000000001")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("GetObject returned %d bytes, want %d", len(got), len(body))
	}
	mu.Lock()
	if len(expects) != 1 || expects[0] != "100-continue" {
		t.Errorf("Expect headers seen: %q (the SDK should ask for 100-continue on a 3 MiB PUT)", expects)
	}
	mu.Unlock()
	if _, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("missing")}); err == nil {
		t.Fatal("GetObject of a missing key succeeded")
	}
}
