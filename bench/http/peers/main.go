// Command benchpeers serves the HTTP comparison's endpoints on the peer
// servers, fasthttp and gnet. It is a separate module so that WeaselDB
// itself does not depend on them; bench/http/run.sh builds it when it can.
//
// The gnet server is the usual minimal HTTP/1.1 echo server of gnet's own
// benchmarks: it finds each request's end by "\r\n\r\n" plus Content-Length
// and answers from an event loop with no general HTTP parsing — the fastest
// a Go event-loop server goes, and a bar, not a like-for-like server.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"runtime"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

func main() {
	server := flag.String("server", "fasthttp", "fasthttp or gnet")
	addr := flag.String("addr", "127.0.0.1:8093", "listen address")
	flag.Parse()
	switch *server {
	case "fasthttp":
		hello := []byte("Hello, World!")
		h := func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/hello":
				ctx.SetContentType("text/plain")
				ctx.SetBody(hello)
			case "/echo":
				ctx.SetContentType("application/octet-stream")
				ctx.SetBody(ctx.PostBody())
			default:
				ctx.SetStatusCode(404)
			}
		}
		fmt.Println("fasthttp listening on", *addr)
		log.Fatal(fasthttp.ListenAndServe(*addr, h))
	case "gnet":
		fmt.Println("gnet listening on", *addr)
		log.Fatal(gnet.Run(&httpServer{}, "tcp://"+*addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(runtime.NumCPU())))
	default:
		log.Fatalf("unknown -server %q", *server)
	}
}

type httpServer struct {
	gnet.BuiltinEventEngine
}

var (
	crlf2     = []byte("\r\n\r\n")
	clHeader  = []byte("\nContent-Length: ")
	clHeaderL = []byte("\ncontent-length: ")
)

func (s *httpServer) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	var out []byte
	consumed := 0
	date := time.Now().UTC().Format(time.RFC1123)
	for {
		data := buf[consumed:]
		end := bytes.Index(data, crlf2)
		if end < 0 {
			break
		}
		head := data[:end+4]
		bodyLen := 0
		i := bytes.Index(head, clHeader)
		if i < 0 {
			i = bytes.Index(head, clHeaderL)
		}
		if i >= 0 {
			rest := head[i+len(clHeader):]
			j := bytes.IndexByte(rest, '\r')
			n, err := strconv.Atoi(string(rest[:j]))
			if err != nil {
				return gnet.Close
			}
			bodyLen = n
		}
		if len(data) < len(head)+bodyLen {
			break
		}
		var body []byte
		if bytes.HasPrefix(head, []byte("GET /hello")) {
			body = []byte("Hello, World!")
		} else {
			body = data[len(head) : len(head)+bodyLen]
		}
		out = append(out, "HTTP/1.1 200 OK\r\nServer: gnet\r\nContent-Type: text/plain\r\nDate: "...)
		out = append(out, date...)
		out = append(out, "\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(len(body)), 10)
		out = append(out, "\r\n\r\n"...)
		out = append(out, body...)
		consumed += len(head) + bodyLen
	}
	if len(out) > 0 {
		c.Write(out)
	}
	c.Discard(consumed)
	return gnet.None
}
