package netpoll

// Benchmarks, each next to its standard-library baseline. Run one at a time
// on a shared machine:
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench . -benchtime=1s -count=3 ./netpoll/

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkParseHead: our in-place head parser against net/http's
// ReadRequest on the same head.
func BenchmarkParseHead(b *testing.B) {
	head := []byte(sampleHead)
	b.Run("netpoll", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(head)))
		var r Request
		for b.Loop() {
			end, _ := findHeadEnd(head, 0)
			if err := parseHead(head[:end], &r); err != nil || r.ContentLength() != 300 {
				b.Fatal(err)
			}
		}
	})
	b.Run("net_http", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(head)))
		rd := bytes.NewReader(head)
		br := bufio.NewReader(rd)
		for b.Loop() {
			rd.Reset(head)
			br.Reset(rd)
			req, err := http.ReadRequest(br)
			if err != nil || req.ContentLength != 300 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRouter: the perfect-hash table against http.ServeMux with the
// same API routes (method patterns and a {policy_id} wildcard), over a mix
// of hits, a parameter and a miss.
func BenchmarkRouter(b *testing.B) {
	paths := []struct{ method, path string }{
		{"POST", "/v1/commit"}, {"GET", "/v1/version"}, {"GET", "/v1/subscribe"},
		{"PUT", "/v1/retention/policy-7"}, {"GET", "/v1/retention/"}, {"GET", "/nope"},
	}
	b.Run("netpoll", func(b *testing.B) {
		b.ReportAllocs()
		rt, _ := NewRouter(apiRoutes())
		reqs := make([]Request, len(paths))
		for i, p := range paths {
			if err := parseHead([]byte(p.method+" "+p.path+" HTTP/1.1\r\nHost: x\r\n\r\n"), &reqs[i]); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			for i := range reqs {
				if res := rt.lookup(&reqs[i]); (res.route == nil) != (i == len(reqs)-1) {
					b.Fatal("wrong match")
				}
			}
		}
	})
	b.Run("servemux", func(b *testing.B) {
		b.ReportAllocs()
		mux := http.NewServeMux()
		h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		for _, r := range apiRoutes() {
			pattern := r.Path
			if i := len(pattern) - 1; pattern[i] == '/' {
				pattern += "{$}"
			}
			mux.Handle(r.Method+" "+pattern, h)
		}
		reqs := make([]*http.Request, len(paths))
		for i, p := range paths {
			reqs[i], _ = http.NewRequest(p.method, "http://x"+p.path, nil)
		}
		for b.Loop() {
			for i, req := range reqs {
				if _, pattern := mux.Handler(req); (pattern == "") != (i == len(reqs)-1) {
					b.Fatalf("wrong match for %s: %q", req.URL.Path, pattern)
				}
			}
		}
	})
}

// BenchmarkRoundTrip: one keep-alive TCP connection, a GET of 13 bytes,
// request and answer in lock step — latency per request through netpoll
// and through net/http's server (client side identical, raw bytes).
func BenchmarkRoundTrip(b *testing.B) {
	req := []byte("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	run := func(b *testing.B, addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 4096)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			n := 0
			for n < 13 || string(buf[n-13:n]) != "Hello, World!" {
				m, err := c.Read(buf[n:])
				if err != nil {
					b.Fatal(err)
				}
				n += m
			}
		}
	}
	b.Run("netpoll", func(b *testing.B) {
		_, addr := startServer(b, Config{}, echoRoutes())
		run(b, addr)
	})
	b.Run("net_http", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("Hello, World!"))
		})}
		go srv.Serve(ln)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		}()
		run(b, ln.Addr().String())
	})
}

// BenchmarkDetachRoundTrip: the same lock-step GET answered inline (the
// baseline), or detached (Detach, DetachPipelined) and answered by another
// goroutine — the cost of the hand-off and of the held entry that carries
// the answer back to the reactor.
func BenchmarkDetachRoundTrip(b *testing.B) {
	hello := []byte("Hello, World!")
	tokens := make(chan Detached, 64)
	go func() {
		for d := range tokens {
			d.Respond(200, "text/plain", hello)
		}
	}()
	defer close(tokens)
	routes := []Route{
		{Method: "GET", Path: "/inline", Handler: Buffered(func(ex *Exchange, _ []byte) { ex.Respond(200, "text/plain", hello) })},
		{Method: "GET", Path: "/detach", Handler: Buffered(func(ex *Exchange, _ []byte) { tokens <- ex.Detach() })},
		{Method: "GET", Path: "/pipelined", Handler: Buffered(func(ex *Exchange, _ []byte) { tokens <- ex.DetachPipelined() })},
	}
	_, addr := startServer(b, Config{}, routes)
	for _, path := range []string{"/inline", "/detach", "/pipelined"} {
		b.Run(path[1:], func(b *testing.B) {
			req := []byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n := 0
				for n < 13 || string(buf[n-13:n]) != "Hello, World!" {
					m, err := c.Read(buf[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
			}
		})
	}
}
