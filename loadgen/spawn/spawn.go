// Package spawn runs a weaseldb server for one loadgen run: a free loopback
// port, a fresh temporary data directory, the chosen backend and config file;
// it waits for /readyz, and at the end stops the server with SIGTERM and
// checks that it exited 0 (API contract: a clean shutdown makes everything
// durable and exits 0).
//
// Use: s, err := spawn.Start(opts); ...; run against s.Addr; err = s.Stop().
package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options says which server to start. Zero durations select the defaults.
type Options struct {
	Binary       string        // path of weaseldb; default ./bin/weaseldb
	Backend      string        // disk or fakes3 (--persist); default disk
	ConfigFile   string        // --config FILE; empty: none
	ExtraArgs    []string      // appended to the command line
	ReadyTimeout time.Duration // default 30s
	StopTimeout  time.Duration // default 60s
	Keep         bool          // keep the data directory and log after Stop
	// Replica: the server is expected to follow another (shared S3 log):
	// ready when /readyz answers 503 with "role":"replica".
	Replica bool
}

// Server is a running weaseldb.
type Server struct {
	Addr    string // host:port it listens on
	DataDir string
	LogPath string // its stdout and stderr
	cmd     *exec.Cmd
	exited  chan struct{} // closed when Wait returned
	waitErr error         // valid once exited is closed
	opts    Options
	tmp     string
}

// Start launches the server and waits until /readyz answers 200.
func Start(opts Options) (*Server, error) {
	if opts.Binary == "" {
		opts.Binary = "./bin/weaseldb"
	}
	if opts.Backend == "" {
		opts.Backend = "disk"
	}
	opts.ReadyTimeout = cmpOr(opts.ReadyTimeout, 30*time.Second)
	opts.StopTimeout = cmpOr(opts.StopTimeout, 60*time.Second)
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("spawn: server binary: %w (build it with `make build`)", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "loadgen-weaseldb-")
	if err != nil {
		return nil, fmt.Errorf("spawn: temp dir: %w", err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), DataDir: filepath.Join(tmp, "data"),
		LogPath: filepath.Join(tmp, "weaseldb.log"), exited: make(chan struct{}), opts: opts, tmp: tmp}
	logFile, err := os.Create(s.LogPath)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("spawn: log file: %w", err)
	}
	args := []string{"--listen", s.Addr, "--data-dir", s.DataDir, "--persist", opts.Backend}
	if opts.ConfigFile != "" {
		args = append(args, "--config", opts.ConfigFile)
	}
	args = append(args, opts.ExtraArgs...)
	s.cmd = exec.Command(opts.Binary, args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("spawn: start %s: %w", opts.Binary, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.kill()
		return nil, fmt.Errorf("spawn: %s %v: %w\n%s", opts.Binary, args, err, s.logTail())
	}
	return s, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the server binds it; the server then fails to start and
// says so, which Start reports.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("spawn: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) waitReady() error {
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("exited before ready: %v", s.waitErr)
		default:
		}
		resp, err := client.Get("http://" + s.Addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == 200 && !s.opts.Replica {
				return nil
			}
			if resp.StatusCode == 503 && s.opts.Replica && strings.Contains(string(body), `"role":"replica"`) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %v", s.opts.ReadyTimeout)
}

// Stop sends SIGTERM, waits for the exit and checks its status is 0. The
// temporary directory is removed unless Options.Keep (or the exit failed,
// when the log is worth reading).
func (s *Server) Stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("spawn: SIGTERM: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StopTimeout)
	defer cancel()
	select {
	case <-s.exited:
	case <-ctx.Done():
		s.kill()
		return fmt.Errorf("spawn: server did not exit within %v of SIGTERM (killed); log kept in %s", s.opts.StopTimeout, s.LogPath)
	}
	if s.waitErr != nil {
		return fmt.Errorf("spawn: server exit after SIGTERM: %v (want status 0); log kept in %s\n%s", s.waitErr, s.LogPath, s.logTail())
	}
	if !s.opts.Keep {
		os.RemoveAll(s.tmp)
	}
	return nil
}

func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// logTail is the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
