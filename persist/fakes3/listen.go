package fakes3

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"weaseldb/netpoll"
)

// TCPServer is a Server hosted by net/http on a TCP listener.
type TCPServer struct {
	// URL is the endpoint to give clients, e.g. "http://127.0.0.1:40123".
	URL       string
	http      *http.Server
	done      chan error
	closeOnce sync.Once
	closeErr  error
}

// ListenTCP hosts s on addr ("127.0.0.1:0" picks a free port) until Close.
func ListenTCP(s *Server, addr string) (*TCPServer, error) {
	return listenTCP(s, s.log, addr)
}

func listenTCP(h http.Handler, log *slog.Logger, addr string) (*TCPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakes3 listen %s: %w", addr, err)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	t := &TCPServer{URL: "http://" + ln.Addr().String(), http: hs, done: make(chan error, 1)}
	go func() { t.done <- hs.Serve(ln) }()
	return t, nil
}

// Close stops accepting, closes every connection and waits for the serve
// loop to end. Later calls return the first call's result.
func (t *TCPServer) Close() error {
	t.closeOnce.Do(func() {
		t.closeErr = t.http.Close()
		if serr := <-t.done; !errors.Is(serr, http.ErrServerClosed) && t.closeErr == nil {
			t.closeErr = serr
		}
	})
	return t.closeErr
}

// Main runs the standalone fake S3 server until SIGINT or SIGTERM and
// returns the process exit code. args excludes the program name.
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakes3", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on (keep it on loopback: there is no authentication)")
	dir := fs.String("dir", "", "directory to keep objects in across restarts (empty: memory only)")
	buckets := fs.String("buckets", "", "comma-separated buckets to create at start")
	objectMax := fs.Int64("max-object-bytes", objectBytesMaxDefault, "largest accepted object in bytes (also bounds request bodies)")
	latency := fs.Duration("put-latency", 0, "fixed latency added to every PutObject (fault injection)")
	host := fs.String("server", "netpoll", "HTTP server to host on: netpoll (WeaselDB's epoll server) or net-http (needed for dropped-connection faults)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: weaseldb fakes3 [flags]

A fake S3 service (path-style, no authentication) for development and
tests. Implements ListObjectsV2, PutObject (aws-chunked, If-None-Match, If-Match),
GetObject (Range), HeadObject, DeleteObject(s), bucket create/head/delete.
Limits: request headers 64 KiB; object size -max-object-bytes; DeleteObjects
1000 keys; ListObjectsV2 1000 keys per page.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fakes3: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	opts := Options{Dir: *dir, ObjectBytesMax: *objectMax, Logger: logger}
	for _, b := range strings.Split(*buckets, ",") {
		if b = strings.TrimSpace(b); b != "" {
			opts.Buckets = append(opts.Buckets, b)
		}
	}
	srv, err := New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "fakes3: %v\n", err)
		return 1
	}
	if *latency > 0 {
		srv.Faults().Set(Fault{Latency: *latency}, OpPutObject)
	}
	var url string
	var closer interface{ Close() error }
	switch *host {
	case "netpoll":
		ns, err := ListenNetpoll(srv, *listen, netpoll.Config{DisableThreadPinning: true})
		if err != nil {
			fmt.Fprintf(stderr, "fakes3: %v\n", err)
			return 1
		}
		url, closer = ns.URL, ns
	case "net-http":
		ts, err := ListenTCP(srv, *listen)
		if err != nil {
			fmt.Fprintf(stderr, "fakes3: %v\n", err)
			return 1
		}
		url, closer = ts.URL, ts
	default:
		fmt.Fprintf(stderr, "fakes3: -server %q: want netpoll or net-http\n", *host)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "fakes3 listening on %s\n", url) // after Notify: a signal from now on stops us cleanly
	<-ctx.Done()
	if err := closer.Close(); err != nil {
		fmt.Fprintf(stderr, "fakes3: %v\n", err)
		return 1
	}
	return 0
}
