// Package netpoll is WeaselDB's HTTP/1.1 server: N reactors, each an epoll
// instance on its own locked (and by default CPU-pinned) OS thread, serving
// non-blocking sockets with golang.org/x/sys/unix — no net/http on the hot
// path. The WeaselDB API and the fake S3 server both run on it.
//
// # Using it
//
//  1. Build the route table once: NewRouter([]Route{...}). Static paths,
//     one trailing path parameter ("/v1/retention/{id}") and a catch-all
//     ("*") are compiled to a perfect hash; each route has a method and a
//     body limit (MaxBodyBytes, answered 413 before the body is read).
//  2. srv, err := NewServer(Config{...}, router) starts the reactors;
//     srv.Listen("127.0.0.1:0") returns the bound address (one SO_REUSEPORT
//     socket per reactor); srv.CreateLocalConnection() returns a net.Conn
//     for in-process clients (a socketpair served like a TCP connection).
//  3. A Handler gets, on the reactor goroutine: ServeHead(ex) with the
//     parsed head, ServeBody(ex, chunk) for each piece of body as it
//     arrives (Content-Length or de-chunked), ServeEnd(ex). Buffered(fn)
//     gathers the body for simple routes; HTTPHandler(h) hosts a standard
//     http.Handler (metrics, fake S3) on a goroutine.
//  4. ServeEnd answers in one of three ways. (a) ex.Respond(status,
//     contentType, body, headers...) answers inline: the bytes go to the
//     connection's write buffer and out at the end of the event. (b)
//     d := ex.Detach() hands the request to a token d that moves to
//     another goroutine, which later calls d.Respond(...) exactly once;
//     meanwhile the reactor serves nothing more on that connection, then
//     sends the answer and goes on with requests pipelined behind it.
//     (b') d := ex.DetachPipelined() does the same but the reactor goes on
//     serving the connection's pipelined requests meanwhile (at most
//     Config.MaxDetachedPerConn tokens out per connection); every answer
//     still goes out in request order. Both are one mechanism (held.go):
//     each detached request takes a place in its connection's answer
//     order, which its token fills. The token gets a copy of the head;
//     Scratch and ConnState are not its own (a handler keeps its request
//     memory itself: httpapi gives each commit in flight its own arena).
//     (c) s := ex.StartStream(status, contentType, headers...) starts a
//     long-lived response (SSE): any goroutine calls s.Write (non-blocking,
//     bounded queue, ErrStreamFull when full) and s.Close, and watches
//     s.Done(). ex.SetConnState keeps per-connection state such as a push
//     parser.
//  5. srv.Shutdown(ctx) stops accepting, closes idle connections and
//     streams, lets in-flight requests answer, and forces the rest when ctx
//     ends. srv.Stats() feeds metrics.
//
// # Ownership
//
// A connection is owned by its reactor; the holder of a Detached token owns
// only that request's place in the answer order (and its copy of the
// request head) between Detach and Respond. Handlers run on the reactor and
// must not block. Everything a Request returns points into the connection's
// read buffer and is valid until the answer is sent (after
// DetachPipelined, only the token's Request, a copy of the head, is). A
// Detached is a value whose first Respond wins (atomically); later ones get
// ErrNotOwner. A Stream is safe for concurrent use; the reactor alone touches
// its socket.
//
// # Wire behaviour and limits
//
//   - Keep-alive by default for HTTP/1.1, on request for HTTP/1.0;
//     "Connection: close" honoured; pipelined requests answered in order
//     (a Detach'ed request holds back the ones behind it; a
//     DetachPipelined one holds back only their answers).
//   - Expect: 100-continue gets "100 Continue" only when the handler has not
//     answered in ServeHead (so a 413 or 415 goes out without it).
//   - Request head larger than MaxHeaderBytes or more than 100 fields: 431.
//     Malformed head or chunking: 400. Unsupported Transfer-Encoding: 501.
//     Other HTTP versions: 505. After these the connection is closed,
//     gracefully: our side is shut down first and the peer's remaining
//     input discarded, so that it can read the answer. Unknown path: 404;
//     known path, other method: 405 with Allow; unknown method on an
//     unknown path: 501 — these keep the connection unless a body was sent
//     with the request (it is not read, so the connection closes).
//   - Error bodies are JSON {"error":"<code>","message":"..."} with the codes
//     of API.md (plus request_header_fields_too_large, not_implemented,
//     expectation_failed, http_version_not_supported for statuses API.md
//     does not list).
//   - Timeouts: IdleTimeout between requests and for a stalled body,
//     HeaderTimeout from the first head byte (slowloris), WriteStallTimeout
//     for a peer that reads nothing of a pending answer or stream.
//   - MaxConnections: one more is accepted, answered 503 and closed.
//   - Streams are chunked for HTTP/1.1 (the connection continues after
//     Close) and close-delimited for HTTP/1.0.
//
// # Design notes
//
// Sockets are registered once, edge-triggered, for EPOLLIN|EPOLLOUT|
// EPOLLRDHUP; nothing calls epoll_ctl on the request path (detaching just
// stops reading). Each connection reads at most readBudget times per wakeup
// and otherwise goes on the reactor's ready list, so one busy pipelining
// client cannot starve the others. Cross-goroutine wakeups (Detached answers,
// stream writes) go through a locked inbox and one eventfd write per batch
// (a flag coalesces them). SO_REUSEPORT listeners per reactor were chosen
// over one acceptor thread: no handoff, no extra wakeup per connection (the
// acceptor variant was not built and measured). Listen first probes the
// address without SO_REUSEPORT, so that a second server cannot silently
// join the port group and take half the connections.
// Responses to one event's pipelined requests are written with one write.
package netpoll
