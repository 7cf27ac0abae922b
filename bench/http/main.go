// Command benchhttp serves the two endpoints of the HTTP comparison — GET
// /hello answering 13 bytes and POST /echo answering its (300-byte) body —
// on one of the servers under test, so that run.sh can drive each with wrk
// in turn.
//
//	go run ./bench/http -server=netpoll -addr=127.0.0.1:8091
//	go run ./bench/http -server=nethttp -addr=127.0.0.1:8092
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weaseldb/weaseldb/netpoll"
)

func main() {
	server := flag.String("server", "netpoll", "netpoll or nethttp")
	addr := flag.String("addr", "127.0.0.1:8091", "listen address")
	reactors := flag.Int("reactors", 0, "netpoll reactors (0 = one per CPU)")
	noPin := flag.Bool("nopin", false, "netpoll: do not pin reactor threads")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *server {
	case "netpoll":
		err = runNetpoll(ctx, *addr, *reactors, *noPin)
	case "nethttp":
		err = runNetHTTP(ctx, *addr)
	default:
		err = fmt.Errorf("unknown -server %q", *server)
	}
	if err != nil {
		slog.Error("benchhttp", "err", err)
		os.Exit(1)
	}
}

var hello = []byte("Hello, World!")

func runNetpoll(ctx context.Context, addr string, reactors int, noPin bool) error {
	router, err := netpoll.NewRouter([]netpoll.Route{
		{Method: "GET", Path: "/hello", Handler: netpoll.Buffered(func(ex *netpoll.Exchange, _ []byte) {
			ex.Respond(200, "text/plain", hello)
		})},
		{Method: "POST", Path: "/echo", Handler: netpoll.Buffered(func(ex *netpoll.Exchange, body []byte) {
			ex.Respond(200, "application/octet-stream", body)
		})},
	})
	if err != nil {
		return err
	}
	srv, err := netpoll.NewServer(netpoll.Config{Reactors: reactors, DisableThreadPinning: noPin}, router)
	if err != nil {
		return err
	}
	bound, err := srv.Listen(addr)
	if err != nil {
		return err
	}
	fmt.Println("netpoll listening on", bound)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func runNetHTTP(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hello)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Println("net/http listening on", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
