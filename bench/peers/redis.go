package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// casScript is the one-round-trip optimistic transaction on Redis: the
// read key's version must not exceed the client's read version, then the
// write key gets the value and the next global version. Versions live in a
// hash per key ("v", and the value in "d"); KEYS[3] is the global counter,
// which makes the order of commits a version sequence as WeaselDB's. The
// answer is {committed 0/1, newest version}.
const casScript = `
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0')}
end
local v = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'v', v, 'd', ARGV[2])
return {1, v}
`

// versionKey is the global version counter of casScript.
const versionKey = "__weaseldb_bench_version"

// redisPeer is a redis-server child process with an append-only file
// fsynced before every answer (appendfsync always) and no RDB snapshots.
type redisPeer struct {
	addr string
	sha  string
	cmd  *exec.Cmd
	done chan error
}

func startRedis(ctx context.Context, binary, dir string) (*redisPeer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, fmt.Errorf("redis log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(binary,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--protected-mode", "no", "--logfile", "",
		"--maxclients", "1000")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &redisPeer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitReady dials until the server answers PING, then loads the script.
func (p *redisPeer) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dialRESP(ctx, p.addr)
		if err == nil {
			defer c.close()
			sha, err := c.do("SCRIPT", "LOAD", casScript)
			if err != nil {
				return fmt.Errorf("redis script load: %w", err)
			}
			s, ok := sha.(string)
			if !ok {
				return fmt.Errorf("redis script load: answer %v, want a sha", sha)
			}
			p.sha = s
			return nil
		}
		select {
		case err := <-p.done:
			return fmt.Errorf("redis-server exited before answering: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server at %s: not answering after 10s: %w", p.addr, err)
		}
	}
}

func (p *redisPeer) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *redisPeer) name() string { return "redis" }

func (p *redisPeer) dial(ctx context.Context) (conn, error) {
	c, err := dialRESP(ctx, p.addr)
	if err != nil {
		return nil, err
	}
	return &redisConn{resp: c, sha: p.sha}, nil
}

type redisConn struct {
	resp *respConn
	sha  string
	ver  []byte // scratch: the read version in decimal
}

func (c *redisConn) commit(_ context.Context, t *txn) (outcome, error) {
	c.ver = strconv.AppendUint(c.ver[:0], t.readVersion, 10)
	w := c.resp.w
	// EVALSHA sha 3 read write versionKey readVersion value
	w.WriteString("*8\r\n")
	c.resp.bulkString(nil, "EVALSHA")
	c.resp.bulkString(nil, c.sha)
	c.resp.bulkString(nil, "3")
	c.resp.bulkString(t.read, "")
	c.resp.bulkString(t.write, "")
	c.resp.bulkString(nil, versionKey)
	c.resp.bulkString(c.ver, "")
	c.resp.bulkString(t.value, "")
	if err := w.Flush(); err != nil {
		return outcome{}, fmt.Errorf("redis send: %w: %w", errBroken, err)
	}
	return c.resp.readCAS()
}

func (c *redisConn) close() error { return c.resp.close() }

// respConn is a minimal RESP2 client: enough for SCRIPT LOAD, PING and
// EVALSHA answers (simple strings, errors, integers, bulk strings, arrays).
type respConn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dialRESP(ctx context.Context, addr string) (*respConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("redis dial %s: %w", addr, err)
	}
	return &respConn{nc: nc, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 4096)}, nil
}

func (c *respConn) close() error { return c.nc.Close() }

// bulkString writes b, or s when b is nil, as a RESP bulk string.
func (c *respConn) bulkString(b []byte, s string) {
	n := len(b)
	if b == nil {
		n = len(s)
	}
	var num [20]byte
	c.w.WriteByte('$')
	c.w.Write(strconv.AppendInt(num[:0], int64(n), 10))
	c.w.WriteString("\r\n")
	if b != nil {
		c.w.Write(b)
	} else {
		c.w.WriteString(s)
	}
	c.w.WriteString("\r\n")
}

// do sends a command of string arguments and reads one answer.
func (c *respConn) do(args ...string) (any, error) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		c.bulkString(nil, a)
	}
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("redis send: %w", err)
	}
	return c.read()
}

// errRedis is an error answer ("-ERR ..."): the connection stays usable.
type errRedis string

func (e errRedis) Error() string { return "redis: " + string(e) }

// line reads one CRLF-terminated line without the CRLF.
func (c *respConn) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("redis read: %w: %w", errBroken, err)
	}
	if len(l) < 3 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("redis read: %w: malformed line %q", errBroken, l)
	}
	return l[:len(l)-2], nil
}

// read parses one answer of any kind (for setup commands, not the hot path).
func (c *respConn) read() (any, error) {
	l, err := c.line()
	if err != nil {
		return nil, err
	}
	switch l[0] {
	case '+':
		return string(l[1:]), nil
	case '-':
		return nil, errRedis(l[1:])
	case ':':
		n, err := strconv.ParseInt(string(l[1:]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis integer %q: %w: %w", l, errBroken, err)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("redis bulk length %q: %w", l, errBroken)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, fmt.Errorf("redis bulk: %w: %w", errBroken, err)
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("redis array length %q: %w", l, errBroken)
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = c.read(); err != nil {
				var re errRedis
				if errors.As(err, &re) {
					continue // an error element; keep the framing
				}
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis answer %q: %w", l, errBroken)
}

// readCAS reads casScript's answer, *2 :committed :version, without
// allocating; anything else is an error (an error answer keeps the
// connection usable).
func (c *respConn) readCAS() (outcome, error) {
	l, err := c.line()
	if err != nil {
		return outcome{}, err
	}
	if l[0] == '-' {
		return outcome{}, errRedis(l[1:])
	}
	if string(l) != "*2" {
		return outcome{}, fmt.Errorf("redis cas answer %q: %w", l, errBroken)
	}
	var vals [2]uint64
	for i := range vals {
		l, err := c.line()
		if err != nil {
			return outcome{}, err
		}
		if l[0] != ':' {
			return outcome{}, fmt.Errorf("redis cas element %q: %w", l, errBroken)
		}
		v, err := strconv.ParseUint(string(l[1:]), 10, 64)
		if err != nil {
			return outcome{}, fmt.Errorf("redis cas element %q: %w: %w", l, errBroken, err)
		}
		vals[i] = v
	}
	return outcome{committed: vals[0] == 1, version: vals[1]}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
