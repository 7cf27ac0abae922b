package fakes3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestDecodeAWSChunked(t *testing.T) {
	data := []byte(strings.Repeat("hello aws-chunked ", 100))
	for _, chunk := range []int{1, 7, 64, len(data), len(data) + 1} {
		for _, signed := range []bool{false, true} {
			trailers := []trailer{{"x-amz-checksum-crc32", "abc="}, {"x-amz-trailer-signature", "00"}}
			body := appendAWSChunked(nil, data, chunk, signed, trailers)
			got, gotTrailers, err := decodeAWSChunked(bytes.NewReader(body), 1<<20)
			if err != nil || !bytes.Equal(got, data) || fmt.Sprint(gotTrailers) != fmt.Sprint(trailers) {
				t.Fatalf("chunk %d signed %v: %d bytes, trailers %v, err %v", chunk, signed, len(got), gotTrailers, err)
			}
		}
	}
	accepted := map[string]string{
		"bare LF trailers":      "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\n\n",
		"no final empty line":   "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n",
		"no trailers":           "3\r\nabc\r\n0\r\n\r\n",
		"no trailers, no end":   "3\r\nabc\r\n0\r\n",
		"upper-case hex":        "A\r\n0123456789\r\n0\r\n\r\n",
		"signature on each one": "3;chunk-signature=" + strings.Repeat("a", 64) + "\r\nabc\r\n0;chunk-signature=" + strings.Repeat("b", 64) + "\r\n\r\n",
		// The examples of AWS's sigv4-streaming-trailers documentation.
		"AWS signed trailer": "3;chunk-signature=" + strings.Repeat("a", 64) + "\r\nabc\r\n0;chunk-signature=" + strings.Repeat("b", 64) +
			"\r\nx-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" + strings.Repeat("c", 64) + "\r\n\r\n",
		"AWS unsigned trailer": "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
		// What minio-go v7 sends (request-signature-streaming*.go).
		"minio unsigned trailer": "3\r\nabc\r\n0\r\nx-amz-checksum-crc32c:sOO8/Q==\n\r\n\r\n",
		"minio signed trailer": "3;chunk-signature=" + strings.Repeat("a", 64) + "\r\nabc\r\n0;chunk-signature=" + strings.Repeat("b", 64) +
			"\r\nx-amz-checksum-crc32c:sOO8/Q==\n\r\nx-amz-trailer-signature:" + strings.Repeat("c", 64) + "\r\n\r\n",
		"several extensions": "3;chunk-signature=" + strings.Repeat("a", 64) + ";x-ext;y=z\r\nabc\r\n0;ext\r\n\r\n",
	}
	for name, body := range accepted {
		if _, _, err := decodeAWSChunked(strings.NewReader(body), 1<<20); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	rejected := map[string]string{
		"empty":              "",
		"truncated data":     "5\r\nab",
		"no last chunk":      "3\r\nabc\r\n",
		"bad size":           "zz\r\nabc\r\n0\r\n\r\n",
		"negative size":      "-3\r\nabc\r\n0\r\n\r\n",
		"huge size":          "7fffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"data too long":      "2\r\nabc\r\n0\r\n\r\n",
		"bad extension":      "3;\r\nabc\r\n0\r\n\r\n",
		"bad trailer":        "3\r\nabc\r\n0\r\nno-colon\r\n\r\n",
		"junk after the end": "3\r\nabc\r\n0\r\n\r\njunk",
		"empty extension":    "3;chunk-signature=" + strings.Repeat("a", 64) + ";\r\nabc\r\n0\r\n\r\n",
		"trailer after the trailer signature": "3\r\nabc\r\n0\r\nx-amz-trailer-signature:" + strings.Repeat("c", 64) +
			"\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
		"endless empty lines": "3\r\nabc\r\n0\r\n" + strings.Repeat("\r\n", 100),
		"no LF after data":    "3\r\nabc\r0\r\n\r\n",
		"endless line":        strings.Repeat("1", 5000),
	}
	for name, body := range rejected {
		if _, _, err := decodeAWSChunked(strings.NewReader(body), 1<<20); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	_, _, err := decodeAWSChunked(strings.NewReader("10\r\n0123456789abcdef\r\n0\r\n\r\n"), 8)
	if !errors.Is(err, errChunkTooBig) {
		t.Errorf("over the limit: %v", err)
	}
}

// FuzzAWSChunked feeds hostile bodies to the decoder (it must not panic or
// exceed its limit) and checks that whatever it accepts re-encodes to the
// same data and trailers.
func FuzzAWSChunked(f *testing.F) {
	f.Add([]byte("3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n"))
	f.Add([]byte("3;chunk-signature=" + strings.Repeat("a", 64) + "\r\nabc\r\n0;chunk-signature=" + strings.Repeat("b", 64) + "\r\n\r\n"))
	f.Add([]byte("0\r\nx-amz-checksum-crc32:AAAAAA==\nx-amz-trailer-signature:00\n\n"))
	f.Add(appendAWSChunked(nil, bytes.Repeat([]byte{0, 1, 2}, 50), 17, false, []trailer{{"a", "b"}}))
	f.Add([]byte("ffffffff\r\n"))
	f.Add([]byte("3\r\nabc\r\n0\r\nx-amz-checksum-crc32c:sOO8/Q==\n\r\nx-amz-trailer-signature:00\r\n\r\n"))
	f.Add([]byte("3;a;b=c\r\nabc\r\n0;d\r\n\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		const limit = 1 << 16
		data, trailers, err := decodeAWSChunked(bytes.NewReader(body), limit)
		if err != nil {
			return
		}
		if len(data) > limit {
			t.Fatalf("decoded %d bytes over the %d limit", len(data), limit)
		}
		again, trailers2, err := decodeAWSChunked(bytes.NewReader(appendAWSChunked(nil, data, 100, true, trailers)), limit)
		if err != nil || !bytes.Equal(again, data) || fmt.Sprint(trailers) != fmt.Sprint(trailers2) {
			t.Fatalf("round trip: %q %v -> %q %v (%v)", data, trailers, again, trailers2, err)
		}
	})
}

func FuzzDeleteObjectsXML(f *testing.F) {
	f.Add([]byte(`<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key></Object><Quiet>true</Quiet></Delete>`))
	f.Add([]byte(`<?xml version="1.0"?><Delete><Object><Key>a&amp;b</Key><VersionId>v</VersionId></Object><Object><Key>c</Key></Object></Delete>`))
	f.Add([]byte(`<Delete><Object><Key><![CDATA[x<y]]></Key></Object></Delete>`))
	f.Add([]byte(`<Delete></Delete>`))
	f.Add([]byte(`<Delete><Object><Key>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseDeleteRequest(body)
		if err != nil {
			return
		}
		if len(req.Objects) == 0 || len(req.Objects) > deleteKeysMax {
			t.Fatalf("accepted %d objects", len(req.Objects))
		}
	})
}

// rawPut sends a hand-built PUT: for bodies the SDK would never produce.
func rawPut(t *testing.T, url, key string, header http.Header, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url+"/"+testBucket+"/"+key, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestRawAWSChunkedChecks(t *testing.T) {
	_, ts := startServer(t, Options{})
	trailerHeaders := http.Header{
		"X-Amz-Content-Sha256":         {"STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
		"Content-Encoding":             {"aws-chunked"},
		"X-Amz-Trailer":                {"x-amz-checksum-crc32"},
		"X-Amz-Decoded-Content-Length": {"3"},
	}
	cases := []struct {
		name   string
		body   string
		status int
	}{
		{"good crc32 trailer", "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n", http.StatusOK},
		{"bad crc32 trailer", "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", http.StatusBadRequest},
		{"missing trailer", "3\r\nabc\r\n0\r\n\r\n", http.StatusBadRequest},
		{"wrong decoded length", "2\r\nab\r\n0\r\nx-amz-checksum-crc32:nu4ZAw==\r\n\r\n", http.StatusBadRequest},
		{"truncated", "3\r\nab", http.StatusBadRequest},
	}
	for _, tc := range cases {
		if resp := rawPut(t, ts.URL, "k", trailerHeaders, tc.body); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	signed := http.Header{
		"X-Amz-Content-Sha256":         {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
		"Content-Encoding":             {"aws-chunked"},
		"X-Amz-Decoded-Content-Length": {"3"},
	}
	body := "3;chunk-signature=" + strings.Repeat("a", 64) + "\r\nabc\r\n0;chunk-signature=" + strings.Repeat("b", 64) + "\r\n\r\n"
	if resp := rawPut(t, ts.URL, "signed", signed, body); resp.StatusCode != http.StatusOK {
		t.Errorf("signed chunks: status %d", resp.StatusCode)
	}
	if resp := rawPut(t, ts.URL, "sha", http.Header{"X-Amz-Content-Sha256": {strings.Repeat("0", 64)}}, "abc"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("wrong x-amz-content-sha256: status %d", resp.StatusCode)
	}
	if resp := rawPut(t, ts.URL, "inm", http.Header{"If-None-Match": {`"abc"`}}, "abc"); resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("If-None-Match other than *: status %d", resp.StatusCode)
	}
}

// TestMainFlags: the main binary's CLI conventions (issue 13.14): --help
// prints the manual on stdout, --version the version, a bad flag or value
// is one line on stderr and exit 2.
func TestMainFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut, "v"); code != 0 || !strings.Contains(out.String(), "SYNOPSIS") ||
		!strings.Contains(out.String(), "--listen ADDR") || errOut.Len() != 0 {
		t.Fatalf("--help: code %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"--version"}, &out, &errOut, "weaseldb 1.2.3 (revision x, go1)"); code != 0 || out.String() != "weaseldb 1.2.3 (revision x, go1)\n" {
		t.Fatalf("--version: code %d, %q", code, out.String())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag (see weaseldb fakes3 --help)"},
		{[]string{"--listen", "notaport"}, `--listen "notaport": want host:port`},
		{[]string{"--server", "apache"}, `--server "apache": want netpoll or net-http`},
		{[]string{"--buckets", "Bad_Bucket", "--listen", "127.0.0.1:0"}, "--buckets: bucket name"},
		{[]string{"--put-latency", "soon"}, "invalid value"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		errOut.Reset()
		code := run(c.args, &out, &errOut, "v")
		lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "weaseldb fakes3: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%v: code %d, stderr %q; want exit 2 and one line containing %q", c.args, code, errOut.String(), c.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	cases := []struct {
		h                 string
		size              int64
		start, end        int64
		ranged, satisfied bool
	}{
		{"", 10, 0, 10, false, true},
		{"bytes=0-0", 10, 0, 1, true, true},
		{"bytes=2-5", 10, 2, 6, true, true},
		{"bytes=5-", 10, 5, 10, true, true},
		{"bytes=-3", 10, 7, 10, true, true},
		{"bytes=10-", 10, 0, 0, true, false},
		{"bytes=0-", 0, 0, 0, true, false},
		{"bytes=5-2", 10, 0, 10, false, true},
		{"bytes=0-1,3-4", 10, 0, 10, false, true},
		{"items=0-1", 10, 0, 10, false, true},
		{"bytes=x-1", 10, 0, 10, false, true},
	}
	for _, tc := range cases {
		s, e, r, ok := parseRange(tc.h, tc.size)
		if s != tc.start || e != tc.end || r != tc.ranged || ok != tc.satisfied {
			t.Errorf("parseRange(%q, %d) = %d %d %v %v", tc.h, tc.size, s, e, r, ok)
		}
	}
}

// TestMainServes runs the standalone command on both HTTP servers and
// talks to it with the SDK, then stops it with SIGINT.
func TestMainServes(t *testing.T) {
	for _, server := range []string{"netpoll", "net-http"} {
		t.Run(server, func(t *testing.T) {
			pr, pw := io.Pipe()
			done := make(chan int, 1)
			go func() {
				done <- run([]string{"--listen", "127.0.0.1:0", "--buckets", testBucket, "--server", server, "--dir", t.TempDir()}, pw, io.Discard, "v")
				pw.Close()
			}()
			line, err := bufio.NewReader(pr).ReadString('\n')
			if err != nil {
				t.Fatalf("no start line: %v", err)
			}
			go io.Copy(io.Discard, pr)
			url := strings.TrimSpace(strings.TrimPrefix(line, "fakes3 listening on "))
			c := newClient(t, &endpoint{URL: url}, clientConfig{})
			if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if code := <-done; code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}
