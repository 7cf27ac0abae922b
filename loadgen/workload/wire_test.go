package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

const pipelinedAnswers = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 72\r\n\r\n" +
	`{"request_id":"abcdefghijklmnopqrstu","status":"committed","version":43}` +
	"HTTP/1.1 409 Conflict\r\ncontent-length: 93\r\n\r\n" +
	`{"request_id":"r","status":"not_committed","reason":"conflict","conflicts":[0],"version": 57}` +
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ver\r\n9;ext=1\r\nsion\":99}\r\n0\r\n\r\n"

func TestReadResponsePipelined(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader(pipelinedAnswers), 64)
	var scratch []byte
	var closing bool
	want := []struct {
		status  int
		version uint64
	}{{200, 43}, {409, 57}, {200, 99}}
	for i, w := range want {
		status, body, err := readResponse(r, &scratch, &closing)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		var out Outcomes
		if v := classify(&out, status, body); status != w.status || v != w.version {
			t.Fatalf("answer %d: status %d version %d, want %d %d (body %q)", i, status, v, w.status, w.version, body)
		}
	}
	if _, _, err := readResponse(r, &scratch, &closing); err == nil {
		t.Fatal("read past the end succeeded")
	}
}

func TestJSONFieldScanner(t *testing.T) {
	body := []byte(`{"read_version":1,"prev_version":7, "version" : 42,"reason":"too_old"}`)
	if v, ok := jsonUint(body, "version"); !ok || v != 42 {
		t.Fatalf("version %d %v, want 42", v, ok)
	}
	if v, ok := jsonUint(body, "prev_version"); !ok || v != 7 {
		t.Fatalf("prev_version %d %v, want 7", v, ok)
	}
	if s, ok := jsonString(body, "reason"); !ok || string(s) != "too_old" {
		t.Fatalf("reason %q %v", s, ok)
	}
	if _, ok := jsonUint(body, "missing"); ok {
		t.Fatal("missing field found")
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	body := []byte(`{"request_id":"r","status":"not_committed","reason":"conflict","conflicts":[0],"version":57}`)
	var out Outcomes
	if n := testing.AllocsPerRun(1000, func() { classify(&out, 409, body) }); n != 0 {
		t.Fatalf("classify allocates %v times", n)
	}
}

// FuzzReadResponse checks the fast parser against net/http.ReadResponse:
// whatever both accept must give the same status and body.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte(pipelinedAnswers))
	f.Add([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var scratch []byte
		var closing bool
		status, body, err := readResponse(bufio.NewReaderSize(bytes.NewReader(raw), 32), &scratch, &closing)
		if err != nil {
			return
		}
		resp, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if herr != nil {
			return // we are more lenient on some heads; not a disagreement on content
		}
		hbody, herr := io.ReadAll(resp.Body)
		if herr != nil || resp.Header.Get("Content-Length") == "" && len(resp.TransferEncoding) == 0 {
			return
		}
		if resp.StatusCode != status || !bytes.Equal(hbody, body) {
			t.Fatalf("status %d body %q; net/http: %d %q", status, body, resp.StatusCode, hbody)
		}
	})
}

// Benchmarks of the hand-tuned pieces next to their obvious baselines. Run:
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench . -benchtime=200ms ./loadgen/workload/

func BenchmarkAppendCommit(b *testing.B) {
	src, _ := NewSource(DefaultShape(), 1)
	g := src.Generator(0)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = g.AppendCommit(buf[:0], 1234, 5678)
	}
	if len(buf) == 0 {
		b.Fatal("empty body")
	}
}

// BenchmarkAppendCommitBaselineJSON encodes the same commit with
// encoding/json from a struct (what a client library would do).
func BenchmarkAppendCommitBaselineJSON(b *testing.B) {
	type pre struct {
		Type string `json:"type"`
		Key  []byte `json:"key"`
	}
	type op struct {
		Type  string `json:"type"`
		Key   []byte `json:"key"`
		Value []byte `json:"value"`
	}
	type commit struct {
		RequestID     string `json:"request_id"`
		ReadVersion   uint64 `json:"read_version"`
		Preconditions []pre  `json:"preconditions"`
		Operations    []op   `json:"operations"`
	}
	c := commit{RequestID: strings.Repeat("a", requestIDBytes), ReadVersion: 1234,
		Preconditions: []pre{{"point_read", []byte("k000000000012345")}},
		Operations:    []op{{"write", []byte("k000000000054321"), make([]byte, 100)}}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		enc.Encode(&c)
	}
}

func BenchmarkReadResponse(b *testing.B) {
	raw := []byte(strings.Repeat(pipelinedAnswers[:strings.Index(pipelinedAnswers, "HTTP/1.1 409")], 1))
	rd := bytes.NewReader(raw)
	r := bufio.NewReaderSize(rd, 4096)
	var scratch []byte
	var closing bool
	var out Outcomes
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		r.Reset(rd)
		status, body, err := readResponse(r, &scratch, &closing)
		if err != nil || classify(&out, status, body) != 43 {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadResponseBaselineNetHTTP(b *testing.B) {
	raw := []byte(pipelinedAnswers[:strings.Index(pipelinedAnswers, "HTTP/1.1 409")])
	rd := bytes.NewReader(raw)
	r := bufio.NewReaderSize(rd, 4096)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		r.Reset(rd)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			b.Fatal(err)
		}
		var a struct{ Version uint64 }
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Version != 43 {
			b.Fatal(err)
		}
	}
}
