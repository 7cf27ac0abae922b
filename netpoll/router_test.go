package netpoll

import (
	"fmt"
	"strings"
	"testing"
)

var nopHandler = Buffered(func(ex *Exchange, _ []byte) { ex.Respond(204, "", nil) })

// apiRoutes mirrors the WeaselDB API table; benchmarks share it.
func apiRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/v1/version", Handler: nopHandler},
		{Method: "POST", Path: "/v1/commit", Handler: nopHandler, MaxBodyBytes: 16 << 20},
		{Method: "GET", Path: "/v1/status", Handler: nopHandler},
		{Method: "GET", Path: "/v1/subscribe", Handler: nopHandler},
		{Method: "GET", Path: "/v1/retention/", Handler: nopHandler},
		{Method: "GET", Path: "/v1/retention/{policy_id}", Handler: nopHandler},
		{Method: "PUT", Path: "/v1/retention/{policy_id}", Handler: nopHandler},
		{Method: "DELETE", Path: "/v1/retention/{policy_id}", Handler: nopHandler},
		{Method: "GET", Path: "/metrics", Handler: nopHandler},
		{Method: "GET", Path: "/healthz", Handler: nopHandler},
		{Method: "GET", Path: "/readyz", Handler: nopHandler},
	}
}

func TestRouterLookup(t *testing.T) {
	rt, err := NewRouter(apiRoutes())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, target string
		status         int
		maxBody        int64
		param          string
	}{
		{"GET", "/v1/version", 0, DefaultMaxBodyBytes, ""},
		{"HEAD", "/v1/version", 0, DefaultMaxBodyBytes, ""},
		{"POST", "/v1/commit", 0, 16 << 20, ""},
		{"GET", "/v1/commit", 405, 0, ""},
		{"GET", "/v1/status?request_id=x", 0, DefaultMaxBodyBytes, ""},
		{"GET", "/v1/retention/", 0, DefaultMaxBodyBytes, ""},
		{"PUT", "/v1/retention/", 405, 0, ""},
		{"DELETE", "/v1/retention/p.1", 0, DefaultMaxBodyBytes, "p.1"},
		{"GET", "/v1/retention/a/b", 404, 0, ""},
		{"GET", "/v1/versions", 404, 0, ""},
		{"GET", "/v1/versio", 404, 0, ""},
		{"GET", "/", 404, 0, ""},
		{"FROB", "/x", 501, 0, ""},
		{"FROB", "/metrics", 405, 0, ""},
	}
	for _, tc := range cases {
		var r Request
		head := tc.method + " " + tc.target + " HTTP/1.1\r\nHost: x\r\n\r\n"
		if err := parseHead([]byte(head), &r); err != nil {
			t.Fatal(err)
		}
		res := rt.lookup(&r)
		if res.status != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.target, res.status, tc.status)
			continue
		}
		if res.route == nil {
			continue
		}
		if res.route.maxBody != tc.maxBody {
			t.Errorf("%s %s: max body %d", tc.method, tc.target, res.route.maxBody)
		}
		p, ok := r.Param("policy_id")
		if string(p) != tc.param || ok != (tc.param != "") {
			t.Errorf("%s %s: param %q %v", tc.method, tc.target, p, ok)
		}
	}
}

func TestRouterRejects(t *testing.T) {
	bad := [][]Route{
		{{Method: "GET", Path: "/a", Handler: nopHandler}, {Method: "GET", Path: "/a", Handler: nopHandler}},
		{{Method: "GET", Path: "a", Handler: nopHandler}},
		{{Method: "GET", Path: "/a/{x}/b", Handler: nopHandler}},
		{{Method: "GET", Path: "/a/{}", Handler: nopHandler}},
		{{Method: "GET", Path: "/a/{x}", Handler: nopHandler}, {Method: "PUT", Path: "/a/{y}", Handler: nopHandler}},
		{{Method: "GET", Path: "/a", Handler: nil}},
		{{Method: "G T", Path: "/a", Handler: nopHandler}},
		{{Method: "GET", Path: "/a", Handler: nopHandler, MaxBodyBytes: -1}},
	}
	for _, routes := range bad {
		if _, err := NewRouter(routes); err == nil {
			t.Errorf("%+v accepted", routes)
		}
	}
}

// TestRouterPerfectHashMany: hundreds of paths all land in their own slot.
func TestRouterPerfectHashMany(t *testing.T) {
	var routes []Route
	for i := 0; i < 500; i++ {
		routes = append(routes, Route{Method: "GET", Path: fmt.Sprintf("/api/v%d/thing%d", i%7, i), Handler: nopHandler})
		routes = append(routes, Route{Method: "GET", Path: fmt.Sprintf("/items%d/{id}", i), Handler: nopHandler})
	}
	rt, err := NewRouter(routes)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		if _, _, status := rt.Handler("GET", fmt.Sprintf("/api/v%d/thing%d", i%7, i)); status != 0 {
			t.Fatalf("static %d: %d", i, status)
		}
		if _, _, status := rt.Handler("GET", fmt.Sprintf("/items%d/x", i)); status != 0 {
			t.Fatalf("param %d: %d", i, status)
		}
		if _, _, status := rt.Handler("GET", fmt.Sprintf("/api/v%d/thing%d", (i+1)%7, i)); status != 404 {
			t.Fatalf("wrong path %d: %d", i, status)
		}
	}
}

func TestAllocsParseAndRoute(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rt, _ := NewRouter(apiRoutes())
	heads := [][]byte{
		[]byte(sampleHead),
		[]byte("DELETE /v1/retention/policy-1 HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
	}
	var r Request
	allocs := testing.AllocsPerRun(1000, func() {
		for _, h := range heads {
			end, _ := findHeadEnd(h, 0)
			if err := parseHead(h[:end], &r); err != nil {
				t.Fatal(err)
			}
			rt.lookup(&r)
			r.Header("content-length")
			r.Query("durable")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse+route", allocs)
	}
}

// TestAllocsServerRoundTrip: a keep-alive GET and a POST through the real
// reactor (over a local connection) allocate nothing in steady state, client
// side included.
func TestAllocsServerRoundTrip(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	srv, _ := startServer(t, Config{Reactors: 1}, echoRoutes())
	c, err := srv.CreateLocalConnection()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /hello HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < 4 || string(buf[n-4:n]) != "abcd" {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
	}
	roundTrip()
	if allocs := testing.AllocsPerRun(500, roundTrip); allocs != 0 {
		t.Fatalf("%v allocations per round trip", allocs)
	}
	if !strings.Contains(string(buf), "Hello, World!") {
		t.Fatalf("unexpected answer %q", buf)
	}
}

// TestAllocsDetachRoundTrip: the commit path — detach on the reactor, answer
// from another goroutine, resume — allocates nothing in steady state.
func TestAllocsDetachRoundTrip(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tokens := make(chan Detached, 1)
	answer := []byte(`{"status":"committed"}`)
	go func() {
		for d := range tokens {
			d.Respond(200, "application/json", answer)
		}
	}()
	defer close(tokens)
	h := Buffered(func(ex *Exchange, body []byte) { tokens <- ex.Detach() })
	srv, _ := startServer(t, Config{Reactors: 1}, []Route{{Method: "POST", Path: "/commit", Handler: h}})
	c, err := srv.CreateLocalConnection()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("POST /commit HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < 2 || string(buf[n-2:n]) != `"}` {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
	}
	roundTrip()
	if allocs := testing.AllocsPerRun(500, roundTrip); allocs != 0 {
		t.Fatalf("%v allocations per detached round trip", allocs)
	}
}
