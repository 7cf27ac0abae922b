package netpoll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// reactor is one event loop: an epoll instance, an eventfd for wakeups from
// other goroutines, its share of the listeners (one SO_REUSEPORT socket per
// reactor per Listen) and the connections it accepted. Everything but the
// inbox and the counters is touched only by its own goroutine.
type reactor struct {
	srv     *Server // immutable
	id      int     // immutable
	epfd    int     // immutable
	eventfd int     // immutable
	cpu     int     // CPU to pin to, -1 for none

	inbox struct {
		sync.Mutex
		cmds   []command
		closed bool // the eventfd is closed: drop posts
	}
	wakePending atomic.Bool // an eventfd write is outstanding; coalesces wakeups
	cmdSpare    []command

	byFD      []*conn // index fd: the open connection on it
	listeners map[int]bool
	active    []*conn
	free      []*conn
	ready     []*conn
	readySwap []*conn
	events    []unix.EpollEvent
	errBuf    []byte // JSON error bodies are built here

	now           int64 // monotonic nanoseconds, refreshed each loop turn
	lastSweep     int64
	lastAcceptLog int64
	sweepEvery    int64
	lingerTimeout time.Duration
	stopping      bool // Shutdown began: close idle connections as they become idle
	exiting       bool // the loop is ending: close, do not recycle

	// Counters, read by Server.Stats from other goroutines.
	accepted    atomic.Uint64
	rejected    atomic.Uint64
	requests    atomic.Uint64
	statuses    [6]atomic.Uint64
	streamsOpen atomic.Int64
	_           [64]byte // keep reactors' hot counters off each other's cache lines
}

type commandKind uint8

const (
	cmdAddConn commandKind = iota // adopt fd (local connection)
	cmdAddListener
	cmdStream // a stream has bytes or was closed
	cmdHeld   // a Detached token answered into its heldAnswer
	cmdShutdown
	cmdStop // forced: close everything and exit
)

type command struct {
	kind   commandKind
	fd     int
	c      *conn
	stream *Stream
	held   *heldAnswer
}

const eventsPerWait = 256

func newReactor(srv *Server, id, cpu int) (*reactor, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll reactor %d: epoll_create1: %w", id, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll reactor %d: eventfd: %w", id, err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, fmt.Errorf("netpoll reactor %d: add eventfd: %w", id, err)
	}
	cfg := &srv.cfg
	sweep := min(cfg.IdleTimeout, cfg.HeaderTimeout, cfg.WriteStallTimeout, cfg.BodyTimeout) / 4
	sweep = max(min(sweep, 250*time.Millisecond), time.Millisecond)
	return &reactor{
		srv:           srv,
		id:            id,
		epfd:          epfd,
		eventfd:       efd,
		cpu:           cpu,
		listeners:     map[int]bool{},
		events:        make([]unix.EpollEvent, eventsPerWait),
		sweepEvery:    int64(sweep),
		lingerTimeout: min(cfg.HeaderTimeout, 5*time.Second),
	}, nil
}

// post hands a command to the reactor from any goroutine and wakes it; many
// posts before the reactor runs cost one eventfd write.
func (r *reactor) post(cmd command) {
	r.inbox.Lock()
	defer r.inbox.Unlock()
	if r.inbox.closed {
		return // the reactor is gone (forced shutdown); so is the connection
	}
	r.inbox.cmds = append(r.inbox.cmds, cmd)
	// Written under the lock so that closeAll cannot close the eventfd (and
	// the number be reused by another file) between the check and the write.
	if r.wakePending.CompareAndSwap(false, true) {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		for {
			_, err := unix.Write(r.eventfd, one[:])
			if err != unix.EINTR {
				break // EAGAIN: the counter is saturated, a wakeup is pending anyway
			}
		}
	}
}

func (r *reactor) loop(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r.cpu >= 0 {
		var set unix.CPUSet
		set.Set(r.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			slog.Warn("netpoll: cannot pin reactor thread", "reactor", r.id, "cpu", r.cpu, "err", err)
		}
	}
	started <- nil
	defer r.srv.reactorsDone.Done()
	r.now = monotonicNow()
	r.lastSweep = r.now
	for {
		timeout := int(r.sweepEvery / int64(time.Millisecond))
		if len(r.ready) > 0 {
			timeout = 0
		}
		n, err := unix.EpollWait(r.epfd, r.events, max(timeout, 1))
		if err != nil && err != unix.EINTR {
			slog.Error("netpoll: epoll_wait failed; reactor stops", "reactor", r.id, "err", err)
			r.closeAll()
			return
		}
		r.now = monotonicNow()
		r.srv.refreshDate()
		for i := 0; i < n; i++ {
			if r.handleEvent(&r.events[i]) {
				r.closeAll()
				return
			}
		}
		r.runReady()
		if r.now-r.lastSweep >= r.sweepEvery {
			r.lastSweep = r.now
			r.sweep()
		}
	}
}

// handleEvent reports true when the reactor must exit.
func (r *reactor) handleEvent(ev *unix.EpollEvent) bool {
	fd := int(ev.Fd)
	if fd == r.eventfd {
		return r.drainInbox()
	}
	if r.listeners[fd] {
		r.acceptAll(fd)
		return false
	}
	if fd >= len(r.byFD) || r.byFD[fd] == nil {
		return false
	}
	c := r.byFD[fd]
	c.drained = false // any event may mean new input (or EOF, or an error)
	if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.peerClosed = true
	}
	r.runGuarded(c)
	return false
}

// runGuarded runs a connection; a panic in a handler closes that
// connection instead of the process.
func (r *reactor) runGuarded(c *conn) {
	defer r.recoverHandler(c)
	c.run()
}

// runGuardedHeld takes in the answer of a Detached token.
func (r *reactor) runGuardedHeld(c *conn, h *heldAnswer) {
	defer r.recoverHandler(c)
	c.completeHeld(h)
}

var errHandlerPanic = errors.New("netpoll: handler panicked")

func (r *reactor) recoverHandler(c *conn) {
	p := recover()
	if p == nil {
		return
	}
	slog.Error("netpoll: handler panicked; connection closed", "reactor", r.id, "panic", p, "stack", string(debug.Stack()))
	if c.state != stateClosed {
		c.close(errHandlerPanic)
	}
}

func (r *reactor) drainInbox() (exit bool) {
	var buf [8]byte
	_, _ = unix.Read(r.eventfd, buf[:]) // resets the counter; EAGAIN means already reset
	r.wakePending.Store(false)
	r.inbox.Lock()
	cmds := r.inbox.cmds
	r.inbox.cmds = r.cmdSpare[:0]
	r.inbox.Unlock()
	for i := range cmds {
		cmd := &cmds[i]
		switch cmd.kind {
		case cmdAddConn:
			r.adopt(cmd.fd, true)
		case cmdAddListener:
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(cmd.fd)}
			if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, cmd.fd, &ev); err != nil {
				slog.Error("netpoll: cannot watch listener", "reactor", r.id, "err", err)
				unix.Close(cmd.fd)
				continue
			}
			r.listeners[cmd.fd] = true
			r.acceptAll(cmd.fd) // connections may have queued before registration
		case cmdHeld:
			r.runGuardedHeld(cmd.c, cmd.held)
		case cmdStream:
			if cmd.c.state == stateStream && cmd.c.stream == cmd.stream {
				r.runGuarded(cmd.c)
			}
		case cmdShutdown:
			r.beginShutdown()
		case cmdStop:
			exit = true
		}
		*cmd = command{}
	}
	r.cmdSpare = cmds[:0]
	return exit
}

func (r *reactor) acceptAll(lfd int) {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case unix.EAGAIN:
			case unix.EINTR, unix.ECONNABORTED:
				continue
			default:
				// EMFILE and friends: the pending connection stays queued;
				// the next accept retries it. Logged at most once a second:
				// this is exactly when a flood of events arrives.
				if r.now-r.lastAcceptLog >= int64(time.Second) {
					r.lastAcceptLog = r.now
					slog.Warn("netpoll: accept failed", "reactor", r.id, "err", err)
				}
			}
			return
		}
		r.accepted.Add(1)
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // best effort: latency only
		r.adopt(fd, false)
	}
}

// busyResponse is the whole answer to a connection over MaxConnections.
const busyResponse = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 60\r\n\r\n" +
	`{"error":"unavailable","message":"too many open connections"}`

func (r *reactor) adopt(fd int, local bool) {
	if r.srv.open.Add(1) > int64(r.srv.cfg.MaxConnections) || r.stopping {
		r.srv.open.Add(-1)
		r.rejected.Add(1)
		_, _ = unix.Write(fd, []byte(busyResponse)) // best effort; the socket is fresh and empty
		_ = unix.Shutdown(fd, unix.SHUT_WR)
		unix.Close(fd)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		slog.Warn("netpoll: epoll_ctl add failed", "reactor", r.id, "err", err)
		r.srv.open.Add(-1)
		unix.Close(fd)
		return
	}
	c := r.newConn()
	c.fd, c.local, c.state = fd, local, stateIdle
	c.lastActive, c.lastWrite = r.now, r.now
	for fd >= len(r.byFD) {
		r.byFD = append(r.byFD, nil)
	}
	r.byFD[fd] = c
	c.index = len(r.active)
	r.active = append(r.active, c)
	r.runGuarded(c) // data may have arrived before registration (ET reports only changes)
}

func (r *reactor) newConn() *conn {
	if n := len(r.free); n > 0 {
		c := r.free[n-1]
		r.free = r.free[:n-1]
		return c
	}
	c := &conn{r: r, rbuf: make([]byte, r.srv.cfg.ReadBufferBytes)}
	c.ex.c = c
	return c
}

// release closes the socket and recycles the connection (a Detached token
// still out answers into its dropped held entry and gets ErrNotOwner).
func (r *reactor) release(c *conn) {
	unix.Close(c.fd)
	r.srv.open.Add(-1)
	r.byFD[c.fd] = nil
	last := r.active[len(r.active)-1]
	r.active[c.index] = last
	last.index = c.index
	r.active = r.active[:len(r.active)-1]
	c.fd = -1
	if c.inReady || r.exiting {
		return // runReady recycles it; on exit nothing is reused
	}
	r.recycle(c)
}

// recycle resets c for reuse field by field (the struct keeps its buffers).
// A stale Detached token never touches it: its held entry was dropped on
// close, its ticket zeroed, and completeHeld ignores entries not in c.held.
func (r *reactor) recycle(c *conn) {
	c.fd, c.index, c.local, c.state = -1, 0, false, stateClosed
	c.rstart, c.rend, c.scanFrom, c.headStart, c.headLen = 0, 0, 0, 0, 0
	c.wbuf, c.wpos, c.writeBlocked, c.shutWrite = c.wbuf[:0], 0, false, false
	if cap(c.wbuf) > wbufKeepBytes {
		// A stream's queue or a big answer: up to 1,024 free connections
		// per reactor must not each pin megabytes.
		c.wbuf = nil
	}
	c.streamHeld = 0
	c.req = Request{}
	c.route, c.bodyLeft, c.bodySeen = nil, 0, 0
	c.dechunk.reset()
	c.answered, c.closeAfter, c.eof, c.peerClosed, c.drained = false, false, false, false, false
	c.headSince, c.lastActive, c.lastWrite, c.lingerEnd = 0, 0, 0, 0
	c.emptyBytes, c.bodyStart, c.bodyRead, c.bodyReserved = 0, 0, 0, 0
	c.stream, c.userState, c.inReady = nil, nil, false
	if cap(c.scratch) > scratchKeepBytes {
		c.scratch = nil
	}
	if len(r.free) < 1024 {
		r.free = append(r.free, c)
	}
}

// wbufKeepBytes is the largest write buffer a recycled connection keeps.
const wbufKeepBytes = 64 << 10

func (r *reactor) markReady(c *conn) {
	if !c.inReady {
		c.inReady = true
		r.ready = append(r.ready, c)
	}
}

func (r *reactor) runReady() {
	batch := r.ready
	r.ready = r.readySwap[:0]
	for i, c := range batch {
		c.inReady = false
		if c.state == stateClosed {
			r.recycle(c)
		} else {
			r.runGuarded(c)
		}
		batch[i] = nil
	}
	r.readySwap = batch[:0]
}

// sweep enforces the timeouts. It walks every connection; at the sweep
// interval that is cheap next to the I/O of thousands of connections.
func (r *reactor) sweep() {
	cfg := &r.srv.cfg
	now := r.now
	for i := len(r.active) - 1; i >= 0; i-- {
		if i >= len(r.active) {
			continue
		}
		c := r.active[i]
		switch {
		case c.writeBlocked && now-c.lastWrite > int64(cfg.WriteStallTimeout):
			c.close(ErrWriteStalled)
		case c.state == stateIdle && c.headSince != 0 && now-c.headSince > int64(cfg.HeaderTimeout):
			c.close(nil) // slowloris
		case c.state == stateIdle && c.rstart == c.rend && c.pendingOutput() == 0 && len(c.held) == 0 &&
			(now-c.lastActive > int64(cfg.IdleTimeout) || r.stopping):
			c.close(nil)
		case c.state == stateBody && now-c.lastActive > int64(cfg.IdleTimeout):
			c.close(nil)
		case c.state == stateBody && c.bodyTooSlow(now):
			// A body trickled in too slowly: 408, then close.
			c.failBody(408, "request_timeout", "request body arrived too slowly")
			r.runGuarded(c)
		case c.state == stateDraining && c.shutWrite && now > c.lingerEnd:
			c.close(nil)
		case c.state == stateStream && r.stopping:
			c.close(ErrServerClosed)
		}
	}
}

func (r *reactor) beginShutdown() {
	r.stopping = true
	for fd := range r.listeners {
		unix.Close(fd)
		delete(r.listeners, fd)
	}
	r.sweep()
}

// closeAll closes every socket on exit (forced shutdown). Detached tokens
// still running keep their conn; their answers go nowhere.
func (r *reactor) closeAll() {
	r.exiting = true
	for fd := range r.listeners {
		unix.Close(fd)
	}
	for len(r.active) > 0 {
		c := r.active[len(r.active)-1]
		if c.stream != nil {
			c.stream.finish(ErrServerClosed)
			c.stream = nil
		}
		c.releaseStreamHeld()
		c.state = stateClosed
		c.dropHeld()
		r.release(c)
	}
	r.inbox.Lock()
	r.inbox.closed = true
	unix.Close(r.eventfd)
	r.inbox.Unlock()
	unix.Close(r.epfd)
}

func (r *reactor) countStatus(status int) {
	if i := status / 100; i >= 1 && i <= 5 {
		r.statuses[i].Add(1)
	}
}

var monotonicBase = time.Now()

func monotonicNow() int64 { return int64(time.Since(monotonicBase)) }
