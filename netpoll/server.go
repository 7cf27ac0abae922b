package netpoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Server is a multi-reactor HTTP/1.1 server. Create it with NewServer,
// give it addresses with Listen and local connections with
// CreateLocalConnection, stop it with Shutdown.
type Server struct {
	cfg      Config  // immutable, defaulted
	router   *Router // immutable
	reactors []*reactor

	open         atomic.Int64 // open connections, all reactors
	nextLocal    atomic.Uint32
	shuttingDown atomic.Bool
	reactorsDone sync.WaitGroup
	date         atomic.Pointer[dateCache]
	streamBytes  *byteBudget // immutable
	bodyBytes    *byteBudget // immutable

	mu struct {
		sync.Mutex
		stopped bool
	}
}

// NewServer validates cfg and starts the reactors (without listeners).
func NewServer(cfg Config, router *Router) (*Server, error) {
	if router == nil {
		return nil, errors.New("netpoll: NewServer: nil router")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, router: router, streamBytes: newByteBudget(cfg.MaxStreamBytesTotal),
		bodyBytes: newByteBudget(cfg.MaxBodyBytesTotal)}
	s.refreshDate()
	cpus := allowedCPUs()
	for i := 0; i < cfg.Reactors; i++ {
		cpu := -1
		if !cfg.DisableThreadPinning && len(cpus) > 0 {
			cpu = cpus[i%len(cpus)]
		}
		r, err := newReactor(s, i, cpu)
		if err != nil {
			for _, started := range s.reactors { // none runs yet
				unix.Close(started.eventfd)
				unix.Close(started.epfd)
			}
			return nil, err
		}
		s.reactors = append(s.reactors, r)
	}
	started := make(chan error, len(s.reactors))
	for _, r := range s.reactors {
		s.reactorsDone.Add(1)
		go r.loop(started)
	}
	for range s.reactors {
		<-started
	}
	return s, nil
}

func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// Listen opens a TCP listener on addr ("127.0.0.1:8080", "127.0.0.1:0",
// "[::1]:0") and returns the bound address. Each reactor gets its own
// SO_REUSEPORT socket on that address, so the kernel spreads connections
// over the reactors and no acceptor thread hands them around.
func (s *Server) Listen(addr string) (net.Addr, error) {
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("netpoll listen %s: %w", addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.stopped || s.shuttingDown.Load() {
		return nil, fmt.Errorf("netpoll listen %s: %w", addr, ErrServerClosed)
	}
	bound, err := probeAddr(tcpAddr)
	if err != nil {
		return nil, fmt.Errorf("netpoll listen %s: %w", addr, err)
	}
	var fds []int
	for range s.reactors {
		fd, err := listenSocket(bound, true)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("netpoll listen %s: %w", addr, err)
		}
		fds = append(fds, fd)
	}
	for i, r := range s.reactors {
		r.post(command{kind: cmdAddListener, fd: fds[i]})
	}
	return bound, nil
}

// probeAddr binds and listens on addr without SO_REUSEPORT, then closes the
// socket, and returns the address it got (the port chosen for port 0).
// SO_REUSEPORT would let a second server run by the same user join our
// listeners and silently take half the connections (two leaders on one
// port); the probe turns that into EADDRINUSE, for us now and for anyone
// after us (whose probe meets our listening sockets).
func probeAddr(addr *net.TCPAddr) (*net.TCPAddr, error) {
	fd, err := listenSocket(addr, false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	return sockaddrToTCP(sa), nil
}

func listenSocket(addr *net.TCPAddr, reusePort bool) (int, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if ip4 := addr.IP.To4(); ip4 != nil || addr.IP == nil {
		v4 := &unix.SockaddrInet4{Port: addr.Port}
		if ip4 != nil {
			copy(v4.Addr[:], ip4)
		}
		sa = v4
	} else {
		family = unix.AF_INET6
		v6 := &unix.SockaddrInet6{Port: addr.Port}
		copy(v6.Addr[:], addr.IP.To16())
		sa = v6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	opts := []int{unix.SO_REUSEADDR}
	if reusePort {
		opts = append(opts, unix.SO_REUSEPORT)
	}
	for _, opt := range opts {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt %d: %w", opt, err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

func sockaddrToTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return &net.TCPAddr{}
}

// CreateLocalConnection returns one end of a socketpair whose other end is
// served by the reactors like an accepted TCP connection: an in-process
// client (e.g. aws-sdk-go-v2 through a custom DialContext) reaches the
// server without a port. The caller closes the returned conn.
func (s *Server) CreateLocalConnection() (net.Conn, error) {
	if s.shuttingDown.Load() {
		return nil, fmt.Errorf("netpoll local connection: %w", ErrServerClosed)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netpoll local connection: socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("netpoll local connection: nonblock: %w", err)
	}
	f := os.NewFile(uintptr(fds[1]), "netpoll-local")
	client, err := net.FileConn(f) // dups the fd into Go's poller
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("netpoll local connection: %w", err)
	}
	r := s.reactors[int(s.nextLocal.Add(1))%len(s.reactors)]
	r.post(command{kind: cmdAddConn, fd: fds[0]})
	return client, nil
}

// Shutdown stops accepting, closes idle connections and streams, lets
// requests in progress (including detached ones) answer with
// "Connection: close", and waits for every connection to close. When ctx
// ends first it closes everything that is left and returns ctx.Err(). The
// reactors are stopped either way; the Server cannot be reused.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return nil
	}
	s.shuttingDown.Store(true)
	s.mu.Unlock()
	for _, r := range s.reactors {
		r.post(command{kind: cmdShutdown})
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
	for s.open.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
		}
	}
	s.mu.Lock()
	s.mu.stopped = true
	s.mu.Unlock()
	s.stopReactors()
	return err
}

func (s *Server) stopReactors() {
	for _, r := range s.reactors {
		r.post(command{kind: cmdStop})
	}
	s.reactorsDone.Wait()
}

// Stats is a snapshot of the server's counters, for metrics.
type Stats struct {
	OpenConnections int64     // TCP and local, now
	Accepted        uint64    // TCP connections accepted
	Rejected        uint64    // connections answered 503 over MaxConnections
	Requests        uint64    // complete request heads received, malformed ones included (an oversized head is not)
	Responses       [6]uint64 // by status class: Responses[2] counts 2xx; [0] unused
	OpenStreams     int64     // streams (StartStream) not yet over
	StreamBytes     int64     // bytes held for streams, all of them (bounded by MaxStreamBytesTotal)
	BodyBytes       int64     // bytes reserved by request bodies being read (bounded by MaxBodyBytesTotal)
}

// Stats sums the reactors' counters.
func (s *Server) Stats() Stats {
	st := Stats{OpenConnections: s.open.Load(), StreamBytes: s.streamBytes.used.Load(),
		BodyBytes: s.bodyBytes.used.Load()}
	for _, r := range s.reactors {
		st.Accepted += r.accepted.Load()
		st.Rejected += r.rejected.Load()
		st.Requests += r.requests.Load()
		st.OpenStreams += r.streamsOpen.Load()
		for i := range st.Responses {
			st.Responses[i] += r.statuses[i].Load()
		}
	}
	return st
}

// refreshDate renews the shared Date line when the second changes.
func (s *Server) refreshDate() {
	now := time.Now()
	if d := s.date.Load(); d != nil && d.unix == now.Unix() {
		return
	}
	d := &dateCache{}
	d.update(now)
	s.date.Store(d)
}

func (s *Server) dateLine() []byte { return s.date.Load().line }
