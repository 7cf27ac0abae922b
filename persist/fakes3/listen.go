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

	"github.com/weaseldb/weaseldb/netpoll"
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
// returns the process exit code. args excludes the program name and the
// subcommand; versionLine is what --version prints.
func Main(args []string, versionLine string) int {
	return run(args, os.Stdout, os.Stderr, versionLine)
}

// usage is the manual of `weaseldb fakes3`, in the main binary's form.
const usage = `NAME
    weaseldb fakes3 - a fake S3 service for development and tests

SYNOPSIS
    weaseldb fakes3 [--listen ADDR] [--dir DIR] [--buckets B1,B2,...]
                    [--max-object-bytes N] [--max-uploads N]
                    [--max-upload-bytes N] [--put-latency DURATION]
                    [--server netpoll|net-http]
    weaseldb fakes3 --version

DESCRIPTION
    Serves the subset of S3 that WeaselDB's S3 backend uses, path-style
    (http://ADDR/<bucket>/<key>): ListObjectsV2, PutObject (aws-chunked,
    checksums, If-None-Match: *, If-Match: ETag), CopyObject, multipart
    uploads, GetObject (Range), HeadObject, DeleteObject(s), bucket
    list/create/head/delete/location (see go doc weaseldb/persist/fakes3). There is no authentication: any credentials work, so
    keep it on loopback. Prints "fakes3 listening on http://ADDR" on stdout
    once it accepts connections; logs go to stderr as JSON lines.

OPTIONS
    --listen ADDR            host:port to listen on (default 127.0.0.1:9000)
    --dir DIR                keep objects in DIR across restarts, fsynced
                             (default: memory only)
    --buckets LIST           comma-separated buckets to create at start
    --max-object-bytes N     largest accepted object in bytes, also bounds
                             request bodies (default 64 MiB)
    --max-uploads N          multipart uploads in progress at once; past
                             it CreateMultipartUpload fails (default 1000)
    --max-upload-bytes N     bytes held by the parts of uploads in
                             progress; past it UploadPart fails
                             (default 1 GiB)
    --put-latency DURATION   fixed latency added to every PutObject, e.g.
                             20ms (fault injection; default 0)
    --server NAME            netpoll (default: WeaselDB's epoll server) or
                             net-http (needed for dropped-connection faults)
    --version                print the version and exit
    -h, --help               this text

LIMITS
    request headers 64 KiB; object size --max-object-bytes; DeleteObjects
    1000 keys; ListObjectsV2 1000 keys per page.

EXIT STATUS
    0 stopped by SIGINT/SIGTERM; 1 runtime failure (the address is in use,
    the directory cannot be read); 2 bad usage.

EXAMPLE
    weaseldb fakes3 --listen 127.0.0.1:9000 --dir /tmp/weasel-s3 --buckets weaseldb
`

func run(args []string, stdout, stderr io.Writer, versionLine string) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "weaseldb fakes3: "+format+"\n", a...)
		return code
	}
	fs := flag.NewFlagSet("weaseldb fakes3", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	listen := fs.String("listen", "127.0.0.1:9000", "")
	dir := fs.String("dir", "", "")
	buckets := fs.String("buckets", "", "")
	objectMax := fs.Int64("max-object-bytes", objectBytesMaxDefault, "")
	uploadsMax := fs.Int("max-uploads", uploadsMaxDefault, "")
	uploadBytesMax := fs.Int64("max-upload-bytes", uploadBytesMaxDefault, "")
	latency := fs.Duration("put-latency", 0, "")
	host := fs.String("server", "netpoll", "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return fail(2, "%v (see weaseldb fakes3 --help)", err)
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q (see weaseldb fakes3 --help)", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, versionLine)
		return 0
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fail(2, "--listen %q: want host:port", *listen)
	}
	if *objectMax <= 0 {
		return fail(2, "--max-object-bytes %d: must be positive", *objectMax)
	}
	if *uploadsMax <= 0 {
		return fail(2, "--max-uploads %d: must be positive", *uploadsMax)
	}
	if *uploadBytesMax <= 0 {
		return fail(2, "--max-upload-bytes %d: must be positive", *uploadBytesMax)
	}
	if *latency < 0 {
		return fail(2, "--put-latency %v: must not be negative", *latency)
	}
	if *host != "netpoll" && *host != "net-http" {
		return fail(2, "--server %q: want netpoll or net-http", *host)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	opts := Options{Dir: *dir, ObjectBytesMax: *objectMax, UploadsMax: *uploadsMax,
		UploadBytesMax: *uploadBytesMax, Logger: logger}
	for _, b := range strings.Split(*buckets, ",") {
		if b = strings.TrimSpace(b); b != "" {
			if err := validBucketName(b); err != nil {
				return fail(2, "--buckets: %v", err)
			}
			opts.Buckets = append(opts.Buckets, b)
		}
	}
	srv, err := New(opts)
	if err != nil {
		return fail(1, "%v", err)
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
			return fail(1, "%v", err)
		}
		url, closer = ns.URL, ns
	case "net-http":
		ts, err := ListenTCP(srv, *listen)
		if err != nil {
			return fail(1, "%v", err)
		}
		url, closer = ts.URL, ts
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "fakes3 listening on %s\n", url) // after Notify: a signal from now on stops us cleanly
	<-ctx.Done()
	if err := closer.Close(); err != nil {
		return fail(1, "%v", err)
	}
	return 0
}
