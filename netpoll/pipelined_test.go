package netpoll

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// pipelinedCommitRoute detaches with DetachPipelined; the handler keeps
// only what the token owns: its own copy of the body.
func pipelinedCommitRoute(tokens chan<- pipelinedToken) Route {
	return Route{Method: "POST", Path: "/commit", MaxBodyBytes: 1 << 10, Handler: Buffered(func(ex *Exchange, body []byte) {
		d := ex.DetachPipelined()
		kept := append([]byte(nil), body...)
		tokens <- pipelinedToken{d: d, body: kept}
	})}
}

type pipelinedToken struct {
	d    Detached
	body []byte
}

func commitReq(body string) string {
	return fmt.Sprintf("POST /commit HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// TestDetachPipelinedOrder: several pipelined requests are detached at
// once, answered in reverse order by different goroutines, with inline
// answers and a stream between them; the answers still go out in request
// order, and each token's Request survives the requests served after it.
func TestDetachPipelinedOrder(t *testing.T) {
	tokens := make(chan pipelinedToken, 16)
	streams := make(chan *Stream, 1)
	routes := append(echoRoutes(), pipelinedCommitRoute(tokens), sseRoute(streams))
	_, addr := startServer(t, Config{}, routes)
	c := dial(t, addr)
	mustWrite(t, c, commitReq("a")+"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"+commitReq("b")+commitReq("c")+
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nlast"+commitReq("d"))
	var got []pipelinedToken
	for range 4 {
		got = append(got, <-tokens)
	}
	errs := make(chan error, 4)
	for i := len(got) - 1; i >= 0; i-- {
		tok := got[i]
		go func() {
			if p := string(tok.d.Request().Path()); p != "/commit" {
				errs <- fmt.Errorf("token %d: path %q", i, p)
				return
			}
			err := tok.d.Respond(200, "text/plain", []byte("committed "+string(tok.body)))
			if err == nil && !errors.Is(tok.d.Respond(200, "", nil), ErrNotOwner) {
				err = errors.New("second Respond not refused")
			}
			errs <- err
		}()
		time.Sleep(time.Millisecond) // let the later ones answer first (not asserted)
	}
	for range got {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	for i, want := range []string{"committed a", "Hello, World!", "committed b", "committed c", "last", "committed d"} {
		resp := readResponse(t, br, "POST")
		if resp.body != want {
			t.Fatalf("response %d = %q, want %q", i, resp.body, want)
		}
	}

	// A stream behind a pipelined token starts only after its answer.
	mustWrite(t, c, commitReq("e")+"GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
	tok := <-tokens
	s := <-streams
	if err := s.Write([]byte("event")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := tok.d.Respond(200, "text/plain", []byte("committed e")); err != nil {
		t.Fatal(err)
	}
	if resp := readResponse(t, br, "POST"); resp.body != "committed e" {
		t.Fatalf("answer before the stream = %q", resp.body)
	}
	if resp := readResponse(t, br, "GET"); resp.body != "event" {
		t.Fatalf("stream body = %q", resp.body)
	}
}

// TestDetachPipelinedLimit: at MaxDetachedPerConn tokens out the reactor
// stops serving the connection; one answer lets the next request in.
func TestDetachPipelinedLimit(t *testing.T) {
	tokens := make(chan pipelinedToken, 16)
	_, addr := startServer(t, Config{MaxDetachedPerConn: 2}, append(echoRoutes(), pipelinedCommitRoute(tokens)))
	c := dial(t, addr)
	mustWrite(t, c, commitReq("1")+commitReq("2")+commitReq("3")+commitReq("4"))
	first, second := <-tokens, <-tokens
	select {
	case tok := <-tokens:
		t.Fatalf("request %q served beyond the limit of 2", tok.body)
	case <-time.After(50 * time.Millisecond):
	}
	if err := second.d.Respond(200, "", []byte("2")); err != nil {
		t.Fatal(err)
	}
	third := <-tokens
	if string(third.body) != "3" {
		t.Fatalf("third token body %q", third.body)
	}
	for _, tok := range []pipelinedToken{first, third} {
		if err := tok.d.Respond(200, "", tok.body); err != nil {
			t.Fatal(err)
		}
	}
	fourth := <-tokens
	if err := fourth.d.Respond(200, "", fourth.body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, want := range []string{"1", "2", "3", "4"} {
		if resp := readResponse(t, br, "POST"); resp.body != want {
			t.Fatalf("response %d = %q, want %q", i, resp.body, want)
		}
	}
}

// TestDetachPipelinedPeerGone: the peer closes with tokens out; their
// answers are refused or dropped, and the server goes on serving.
func TestDetachPipelinedPeerGone(t *testing.T) {
	tokens := make(chan pipelinedToken, 16)
	_, addr := startServer(t, Config{}, append(echoRoutes(), pipelinedCommitRoute(tokens)))
	c := dial(t, addr)
	mustWrite(t, c, commitReq("1")+commitReq("2")+commitReq("3"))
	var got []pipelinedToken
	for range 3 {
		got = append(got, <-tokens)
	}
	c.Close()
	for _, tok := range got[1:] {
		if err := tok.d.Respond(200, "", tok.body); err != nil && !errors.Is(err, ErrNotOwner) {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // let the reactor see the close (either order is fine)
	if err := got[0].d.Respond(200, "", got[0].body); err != nil && !errors.Is(err, ErrNotOwner) {
		t.Fatal(err)
	}
	c2 := dial(t, addr)
	mustWrite(t, c2, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"+commitReq("x"))
	tok := <-tokens
	if err := tok.d.Respond(200, "", tok.body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c2)
	if resp := readResponse(t, br, "GET"); resp.body != "Hello, World!" {
		t.Fatalf("got %q", resp.body)
	}
	if resp := readResponse(t, br, "POST"); resp.body != "x" {
		t.Fatalf("got %q", resp.body)
	}
}

// TestDetachPipelinedShutdown: Shutdown waits for the tokens out, their
// answers are delivered, then the connection closes.
func TestDetachPipelinedShutdown(t *testing.T) {
	tokens := make(chan pipelinedToken, 16)
	srv, addr := startServer(t, Config{}, append(echoRoutes(), pipelinedCommitRoute(tokens)))
	c := dial(t, addr)
	mustWrite(t, c, commitReq("1")+commitReq("2"))
	a, b := <-tokens, <-tokens
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	time.Sleep(5 * time.Millisecond) // let shutdown begin (either order is fine)
	for _, tok := range []pipelinedToken{b, a} {
		if err := tok.d.Respond(200, "", tok.body); err != nil {
			t.Fatal(err)
		}
	}
	all := readAllUntilClose(t, c)
	if i, j := strings.Index(all, "\r\n\r\n1"), strings.Index(all, "\r\n\r\n2"); i < 0 || j < i {
		t.Fatalf("answers out of order or missing: %q", all)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
