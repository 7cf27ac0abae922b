// Package tlsfront serves TLS on the client listener for deployments without
// a TLS-terminating proxy: it accepts TLS connections with crypto/tls and
// bridges each one, in plaintext, to the netpoll server through a local
// connection (a socketpair the reactors serve like an accepted socket).
//
// # Use
//
//  1. Build the netpoll server as usual, but do not call its Listen.
//  2. f, err := tlsfront.Listen(addr, tlsConfig, srv, tlsfront.Options{MaxConnections: n}).
//     f.Addr() is the bound address.
//  3. At shutdown, after srv.Shutdown: f.Close() (stops accepting, closes
//     every bridged connection, waits for its goroutines).
//
// # Cost, and why this shape
//
// Every byte is copied once more than on a plain listener (TLS record ->
// user space -> socketpair -> reactor), and each connection holds two
// goroutines and two 16 KiB copy buffers. The reactors stay the only
// HTTP implementation (same parser, limits, timeouts, pipelining and stream
// back-pressure); a TLS implementation inside the edge-triggered reactors
// would be a second, unaudited crypto path. Where throughput matters,
// terminate TLS in a proxy (or a load balancer) in front of a plain listener.
//
// # Limits
//
//   - MaxConnections bridged connections at once (default 10,000); one more
//     is closed at once, before the handshake.
//   - HandshakeTimeout (default 10s) bounds the TLS handshake, so a client
//     that connects and sends nothing holds no goroutine for long. After the
//     handshake the netpoll server's own timeouts (header, idle, write
//     stall) apply, seen through the bridge: when it closes its end, the
//     client's connection is closed too.
package tlsfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Backend is what a bridged connection is connected to:
// *netpoll.Server satisfies it.
type Backend interface {
	CreateLocalConnection() (net.Conn, error)
}

// Options configure a Front. Zero values select the defaults.
type Options struct {
	// MaxConnections bounds the bridged connections; 0 means 10,000.
	MaxConnections int
	// HandshakeTimeout bounds each TLS handshake; 0 means 10s.
	HandshakeTimeout time.Duration
	// Logger receives accept failures, never one line per connection.
	// Nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultMaxConnections   = 10000
	defaultHandshakeTimeout = 10 * time.Second
	copyBufferBytes         = 16 << 10 // one TLS record's worth of plaintext
)

// Front is a TLS listener bridged to a Backend.
type Front struct {
	ln      net.Listener // immutable; never nil
	backend Backend      // immutable; never nil
	tls     *tls.Config  // immutable; never nil
	opts    Options      // immutable; defaults filled in
	slots   chan struct{}
	wg      sync.WaitGroup

	mu struct {
		sync.Mutex
		closed bool
		conns  map[net.Conn]struct{} // client and local ends alive
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferBytes); return &b }}

// LoadConfig builds a server tls.Config from PEM certificate and key files
// (TLS 1.2 at least).
func LoadConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsfront: load %s, %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Listen binds addr and starts accepting TLS connections for backend.
func Listen(addr string, cfg *tls.Config, backend Backend, opts Options) (*Front, error) {
	if cfg == nil || backend == nil {
		return nil, errors.New("tlsfront: Listen needs a tls.Config and a backend")
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = defaultMaxConnections
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = defaultHandshakeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tlsfront: listen %s: %w", addr, err)
	}
	f := &Front{ln: ln, backend: backend, tls: cfg, opts: opts, slots: make(chan struct{}, opts.MaxConnections)}
	f.mu.conns = make(map[net.Conn]struct{})
	f.wg.Add(1)
	go f.acceptLoop()
	return f, nil
}

// Addr is the bound address.
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

// Close stops accepting, closes every bridged connection and waits until
// all of the Front's goroutines have returned.
func (f *Front) Close() error {
	f.mu.Lock()
	f.mu.closed = true
	for c := range f.mu.conns {
		c.Close()
	}
	f.mu.Unlock()
	err := f.ln.Close()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (f *Front) acceptLoop() {
	defer f.wg.Done()
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait a little instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.opts.Logger.Warn("tlsfront: accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case f.slots <- struct{}{}:
		default:
			c.Close() // over MaxConnections
			continue
		}
		if !f.track(c) {
			<-f.slots
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

// track registers c for Close; false when the Front is closed.
func (f *Front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return false
	}
	f.mu.conns[c] = struct{}{}
	return true
}

func (f *Front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.mu.conns, c)
	f.mu.Unlock()
	c.Close()
}

// serve handshakes and bridges one connection until either side ends.
func (f *Front) serve(raw net.Conn) {
	defer f.wg.Done()
	defer func() { <-f.slots }()
	defer f.untrack(raw)
	tc := tls.Server(raw, f.tls)
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return // a client's failed handshake is not the server's problem to log
	}
	local, err := f.backend.CreateLocalConnection()
	if err != nil {
		f.opts.Logger.Warn("tlsfront: local connection failed", "err", err)
		return
	}
	if !f.track(local) {
		local.Close()
		return
	}
	defer f.untrack(local)

	// client -> server: at the client's EOF, half-close towards the server
	// so it still answers what it got. server -> client: when the server
	// closes (Connection: close, a timeout, shutdown) everything ends.
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		copyWithPool(local, tc)
		if cw, ok := local.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			local.Close()
		}
	}()
	copyWithPool(tc, local)
	tc.CloseWrite() // close_notify, best effort
	raw.Close()
	local.Close()
	<-upDone
}

func copyWithPool(dst io.Writer, src io.Reader) {
	bp := bufPool.Get().(*[]byte)
	io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	bufPool.Put(bp)
}
