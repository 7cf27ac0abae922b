package netpoll

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Config sets the server's shape and its anti-DoS limits. The zero value
// is usable: every zero field selects the default named in its comment, and
// no limit can be switched off.
type Config struct {
	// Reactors is the number of event loops (epoll instances, each on its
	// own locked OS thread). 0 = one per CPU (runtime.GOMAXPROCS).
	Reactors int
	// DisableThreadPinning leaves reactor threads unpinned. By default each
	// reactor thread is pinned to one CPU with sched_setaffinity, reactor i
	// to the i-th CPU the process may run on. Pinning gives more requests/s
	// and a lower median; on a host shared with other busy processes an
	// unpinned reactor has the better p99 (bench/results/netpoll.md).
	DisableThreadPinning bool
	// MaxConnections bounds open connections (TCP and local). A connection
	// beyond it is accepted, answered 503 and closed. 0 = 10,000.
	MaxConnections int
	// ReadBufferBytes is each connection's read buffer. A request head must
	// fit in it with room to spare: at least MaxHeaderBytes + 4 KiB.
	// 0 = 32 KiB.
	ReadBufferBytes int
	// MaxHeaderBytes bounds the request line plus header fields; larger is
	// answered 431. 0 = 16 KiB.
	MaxHeaderBytes int
	// IdleTimeout closes a keep-alive connection with no request in
	// progress, and a request whose body makes no progress, after this long.
	// 0 = 60s.
	IdleTimeout time.Duration
	// HeaderTimeout bounds the time from the first byte of a request head to
	// its last (slowloris); the connection is closed. Empty lines before the
	// request line count as part of the head, except one stray CRLF after
	// a body (RFC 9112 §2.2). 0 = 10s.
	HeaderTimeout time.Duration
	// BodyTimeout and MinBodyRate bound how slowly a request body may
	// arrive (slowloris with a body trickled a byte at a time): the body
	// must be complete within BodyTimeout after its head, plus one second
	// for every MinBodyRate bytes received, or the request is answered 408
	// and the connection closed. That is Apache's mod_reqtimeout rule
	// ("body=20,MinRate=500"): a large body on a slow link gets the time its
	// size needs, a trickle does not. Time the server itself stops reading
	// (the request-body budget) does not count. 0 = 20s and 500 bytes/s.
	BodyTimeout time.Duration
	MinBodyRate int
	// WriteStallTimeout closes a connection whose peer accepts no bytes of a
	// pending response or stream for this long. 0 = 30s.
	WriteStallTimeout time.Duration
	// MaxStreamQueueBytes bounds the bytes a stream (Exchange.StartStream)
	// may have queued and not yet written; Stream.Write refuses beyond it.
	// At most twice this is held per stream (one batch being written, one
	// queued). 0 = 1 MiB.
	MaxStreamQueueBytes int
	// MaxStreamBytesTotal bounds the bytes all streams of the server hold at
	// once (each stream's queue plus what the reactor took from it and has
	// not written). A Write past it is refused with ErrStreamFull, as if the
	// stream's own queue were full; Exchange.StreamBytesFree tells a handler
	// whether a new stream has room (WeaselDB answers a new subscriber 503
	// when it has not). 0 = 1 GiB.
	MaxStreamBytesTotal int64
	// MaxBodyBytesTotal bounds the bytes of request bodies being read at
	// once, all connections together: a body with a Content-Length reserves
	// it before a byte is read and is answered 503 when it does not fit (a
	// body over 64 KiB may use only 7/8 of the bound, so small requests
	// still pass when big ones fill it); a chunked body reserves as it
	// arrives and is answered 503, and the connection closed, when the
	// bound is reached. 0 = 1 GiB.
	MaxBodyBytesTotal int64
	// MaxWriteBufferBytes is how much response data pipelined requests may
	// pile up before the server stops reading that connection until the
	// peer reads. 0 = 1 MiB.
	MaxWriteBufferBytes int
	// MaxDetachedPerConn bounds the requests of one connection detached
	// with Exchange.DetachPipelined and not yet answered; at the bound the
	// reactor stops reading that connection until one answers. 0 = 16
	// (DetachedPerConn gives the effective value); 1 makes DetachPipelined
	// behave like Detach.
	MaxDetachedPerConn int
}

// Defaults, in one place.
const (
	defaultMaxConnections      = 10000
	defaultReadBufferBytes     = 32 << 10
	defaultMaxHeaderBytes      = 16 << 10
	defaultIdleTimeout         = 60 * time.Second
	defaultHeaderTimeout       = 10 * time.Second
	defaultWriteStallTimeout   = 30 * time.Second
	defaultBodyTimeout         = 20 * time.Second
	defaultMinBodyRate         = 500
	defaultMaxStreamQueueBytes = 1 << 20
	defaultMaxStreamBytesTotal = 1 << 30
	defaultMaxBodyBytesTotal   = 1 << 30
	defaultMaxWriteBufferBytes = 1 << 20
	defaultMaxDetachedPerConn  = 16
	headRoomBytes              = 4 << 10
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Reactors == 0 {
		c.Reactors = runtime.GOMAXPROCS(0)
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = defaultMaxConnections
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if c.ReadBufferBytes == 0 {
		c.ReadBufferBytes = max(defaultReadBufferBytes, c.MaxHeaderBytes+headRoomBytes)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = defaultHeaderTimeout
	}
	if c.WriteStallTimeout == 0 {
		c.WriteStallTimeout = defaultWriteStallTimeout
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = defaultBodyTimeout
	}
	if c.MinBodyRate == 0 {
		c.MinBodyRate = defaultMinBodyRate
	}
	if c.MaxStreamQueueBytes == 0 {
		c.MaxStreamQueueBytes = defaultMaxStreamQueueBytes
	}
	if c.MaxWriteBufferBytes == 0 {
		c.MaxWriteBufferBytes = defaultMaxWriteBufferBytes
	}
	if c.MaxStreamBytesTotal == 0 {
		c.MaxStreamBytesTotal = defaultMaxStreamBytesTotal
	}
	if c.MaxBodyBytesTotal == 0 {
		c.MaxBodyBytesTotal = defaultMaxBodyBytesTotal
	}
	if c.MaxDetachedPerConn == 0 {
		c.MaxDetachedPerConn = DetachedPerConn(0)
	}
	return c
}

// validate reports every problem of a defaulted config at once.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Reactors < 1 || c.Reactors > 1024 {
		bad("Reactors = %d: want 1..1024 (0 = one per CPU)", c.Reactors)
	}
	if c.MaxConnections < 1 {
		bad("MaxConnections = %d: want > 0", c.MaxConnections)
	}
	if c.MaxHeaderBytes < 256 || c.MaxHeaderBytes > 1<<20 {
		bad("MaxHeaderBytes = %d: want 256..1 MiB", c.MaxHeaderBytes)
	}
	if c.ReadBufferBytes < c.MaxHeaderBytes+headRoomBytes {
		bad("ReadBufferBytes = %d: want at least MaxHeaderBytes (%d) + %d", c.ReadBufferBytes, c.MaxHeaderBytes, headRoomBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"IdleTimeout", c.IdleTimeout}, {"HeaderTimeout", c.HeaderTimeout}, {"WriteStallTimeout", c.WriteStallTimeout}, {"BodyTimeout", c.BodyTimeout}} {
		if d.v < time.Millisecond {
			bad("%s = %v: want >= 1ms", d.name, d.v)
		}
	}
	if c.MinBodyRate < 1 {
		bad("MinBodyRate = %d: want >= 1 byte/s", c.MinBodyRate)
	}
	if c.MaxStreamQueueBytes < 4096 {
		bad("MaxStreamQueueBytes = %d: want >= 4096", c.MaxStreamQueueBytes)
	}
	if c.MaxStreamBytesTotal < int64(c.MaxStreamQueueBytes) {
		bad("MaxStreamBytesTotal = %d: want at least MaxStreamQueueBytes (%d)", c.MaxStreamBytesTotal, c.MaxStreamQueueBytes)
	}
	if c.MaxBodyBytesTotal < 64<<10 {
		bad("MaxBodyBytesTotal = %d: want >= 64 KiB", c.MaxBodyBytesTotal)
	}
	if c.MaxWriteBufferBytes < 4096 {
		bad("MaxWriteBufferBytes = %d: want >= 4096", c.MaxWriteBufferBytes)
	}
	if len(errs) > 0 {
		return fmt.Errorf("netpoll config: %w", errors.Join(errs...))
	}
	return nil
}

// DetachedPerConn returns the MaxDetachedPerConn a server uses for the
// configured value n (0 means the default), for callers that size their
// per-connection pools to it.
func DetachedPerConn(n int) int {
	if n == 0 {
		return defaultMaxDetachedPerConn
	}
	return n
}
