// Package harness runs the real weaseldb binary for the out-of-process
// reliability suites (tests/crash, tests/fault, tests/overload,
// tests/security): it builds the binary once per test package, starts it on
// a loopback port chosen by the kernel, learns the address from the server's
// "weaseldb ready" log line, and stops it gracefully or with SIGKILL.
//
// # Use
//
//  1. In TestMain: bin, cleanup, err := harness.Build(); defer cleanup().
//  2. In a test: s, err := harness.Start(harness.Options{Bin: bin, DataDir: dir}).
//     s.URL is "http://127.0.0.1:PORT"; s.Log() is everything the server
//     wrote to stderr so far (print it when a test fails).
//  3. s.Kill() (SIGKILL, for crash tests) or s.Stop() (SIGTERM, graceful).
//
// Raw HTTP helpers (Do, DoJSON, Commit, Subscribe) speak the API without the
// Go client, so that a test sees every answer exactly as sent, including
// lost ones: the crash driver must tell "acknowledged" from "answer lost"
// itself, which the client's own status resolution would hide.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to log "weaseldb ready".
const startTimeout = 30 * time.Second

// Build compiles ./cmd/weaseldb into a temporary directory and returns the
// binary's path and a function removing it. It runs `go build` from the
// module root, found by walking up from the working directory.
//
// WEASELDB_TEST_BIN=path skips the build and uses that binary instead (for
// a release build, or while the work tree does not compile).
func Build() (bin string, cleanup func(), err error) {
	return BuildTags("")
}

// BuildTags is Build with `go build -tags tags` ("" for none); it ignores
// WEASELDB_TEST_BIN when tags is not empty.
func BuildTags(tags string) (bin string, cleanup func(), err error) {
	if b := os.Getenv("WEASELDB_TEST_BIN"); b != "" && tags == "" {
		if _, err := os.Stat(b); err != nil {
			return "", func() {}, fmt.Errorf("harness: WEASELDB_TEST_BIN: %w", err)
		}
		return b, func() {}, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", func() {}, err
	}
	dir, err := os.MkdirTemp("", "weaseldb-bin-")
	if err != nil {
		return "", func() {}, fmt.Errorf("harness build: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "weaseldb")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, "./cmd/weaseldb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("harness build: %w\n%s", err, out)
	}
	return bin, cleanup, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Options say how to start a server.
type Options struct {
	Bin     string   // path of the weaseldb binary; required
	DataDir string   // --data-dir; required
	Persist string   // --persist; "" means disk
	Config  string   // TOML text written to a file and passed as --config; "" for none
	Env     []string // extra environment, KEY=VALUE
	Args    []string // extra flags
	// Listen is the client address; "" means 127.0.0.1:0 (a kernel-chosen port).
	Listen string
	// TLS: the server is configured with a certificate; URL is https://.
	TLS bool
	// AllowReplica: on the S3 backend the server may start as a replica of
	// a live leader (tests/failover); Start returns once it listens.
	// Without it, a server that starts as a replica (it found the lease of
	// a leader that died, e.g. its own previous process after a SIGKILL)
	// is waited for until it takes over and /readyz answers 200.
	AllowReplica bool
}

// Server is a running weaseldb process.
type Server struct {
	URL  string // http://host:port of the client listener
	Addr string // host:port
	Cmd  *exec.Cmd

	mu     sync.Mutex
	stderr bytes.Buffer // guarded by mu
	stdout bytes.Buffer // guarded by mu; the server writes nothing there, but a crash might
	done   chan struct{}
	err    error // the process's exit; valid after done is closed
}

// ErrExited is returned by Start when the process exited before it was ready;
// the error text carries its stderr.
var ErrExited = errors.New("harness: server exited before it was ready")

// Start starts a server and waits until it logs that it is ready.
func Start(o Options) (*Server, error) {
	args := []string{"--data-dir", o.DataDir}
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args = append(args, "--listen", listen)
	if o.Persist != "" {
		args = append(args, "--persist", o.Persist)
	}
	if o.Config != "" {
		f, err := os.CreateTemp("", "weaseldb-config-*.toml")
		if err != nil {
			return nil, fmt.Errorf("harness start: %w", err)
		}
		defer os.Remove(f.Name()) // read once at startup
		if _, err := f.WriteString(o.Config); err != nil {
			f.Close()
			return nil, fmt.Errorf("harness start: %w", err)
		}
		f.Close()
		args = append(args, "--config", f.Name())
	}
	args = append(args, o.Args...)
	cmd := exec.Command(o.Bin, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	s := &Server{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = stdoutWriter{s}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("harness start: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("harness start %s: %w", o.Bin, err)
	}
	ready := make(chan string, 1)
	logged := make(chan struct{})
	go func() {
		s.readStderr(pipe, ready)
		close(logged)
	}()
	go func() {
		<-logged // Wait closes the pipe: read it to the end first
		s.err = cmd.Wait()
		close(s.done)
	}()
	select {
	case addr := <-ready:
		s.Addr = addr
		s.URL = "http://" + addr
		if o.TLS {
			s.URL = "https://" + addr
		}
		if !o.AllowReplica && !o.TLS {
			if err := s.waitLeads(); err != nil {
				s.Kill()
				return nil, err
			}
		}
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%w (%v):\n%s", ErrExited, s.err, s.exitReport())
	case <-time.After(startTimeout):
		s.Kill()
		return nil, fmt.Errorf("harness start: not ready after %v:\n%s", startTimeout, s.Log())
	}
}

// waitLeads waits while the server is a replica (/readyz 503 naming role
// replica) until it leads, bounded by startTimeout; any other answer ends
// the wait at once (a server that is not ready for another reason is the
// test's business).
func (s *Server) waitLeads() error {
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := hc.Get(s.URL + "/readyz")
		if err != nil {
			return nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"role":"replica"`)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness start: still a replica after %v (no leader took over):\n%s", startTimeout, s.Log())
		}
		select {
		case <-s.done:
			return fmt.Errorf("%w (%v):\n%s", ErrExited, s.err, s.exitReport())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stdoutWriter keeps what the server writes to stdout.
type stdoutWriter struct{ s *Server }

func (w stdoutWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stdout.Write(p)
}

// exitReport is what a server that exited left behind: its stderr, its
// stdout if any, or a plain statement that it wrote nothing.
func (s *Server) exitReport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.Write(s.stderr.Bytes())
	if s.stdout.Len() > 0 {
		fmt.Fprintf(&b, "--- stdout:\n%s", s.stdout.Bytes())
	}
	if b.Len() == 0 {
		b.WriteString("(the process wrote nothing to stderr or stdout)")
	}
	if ps := s.Cmd.ProcessState; ps != nil {
		if st, ok := ps.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			fmt.Fprintf(&b, "\n(killed by signal %v)", st.Signal())
		}
	}
	return b.String()
}

// maxLogLine bounds one kept log line; a longer one is kept cut, with a
// note, and reading goes on (a reader that stopped would lose the rest of
// the log, the exit's reason included, and block the server's writes).
const maxLogLine = 1 << 20

// readStderr keeps the server's log and reports the listen address of the
// "weaseldb ready" line. It reads to the end, whatever it meets.
func (s *Server) readStderr(r io.Reader, ready chan<- string) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, cut, err := readLine(br)
		if err == nil || len(line) > 0 || cut > 0 {
			s.mu.Lock()
			s.stderr.Write(line)
			if cut > 0 {
				fmt.Fprintf(&s.stderr, " [harness: %d more bytes of this line not kept]", cut)
			}
			s.stderr.WriteByte('\n')
			s.mu.Unlock()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.mu.Lock()
				fmt.Fprintf(&s.stderr, "[harness: reading the server's stderr: %v]\n", err)
				s.mu.Unlock()
				io.Copy(io.Discard, r) // never leave the server blocked on a full pipe
			}
			return
		}
		if !bytes.Contains(line, []byte(`"weaseldb ready"`)) {
			continue
		}
		var rec struct {
			Listen string `json:"listen"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Listen != "" {
			select {
			case ready <- rec.Listen:
			default:
			}
		}
	}
}

// readLine reads one line without its newline, keeping at most maxLogLine
// bytes of it and counting the rest (cut). err is the read's error (io.EOF
// at the end); line holds what came before it.
func readLine(br *bufio.Reader) (line []byte, cut int, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if room := maxLogLine - len(line); room > 0 {
			line = append(line, chunk[:min(len(chunk), room)]...)
			cut += len(chunk) - min(len(chunk), room)
		} else {
			cut += len(chunk)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		} else if cut > 0 && err == nil {
			cut-- // the newline was among the bytes not kept
		}
		return line, cut, err
	}
}

// Log returns everything the server wrote to stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (s *Server) Kill() {
	s.Cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
// It returns the exit error (nil for exit status 0).
func (s *Server) Stop(timeout time.Duration) error {
	s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		s.Kill()
		return fmt.Errorf("harness stop: no exit %v after SIGTERM; killed", timeout)
	}
}

// Wait waits for the process to end by itself and returns its exit error.
func (s *Server) Wait(timeout time.Duration) error {
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		return fmt.Errorf("harness: process still running after %v", timeout)
	}
}

// PeakRSS returns the server's peak resident set size (VmHWM) in bytes.
func (s *Server) PeakRSS() (int64, error) {
	return procStatusKiB(s.Pid(), "VmHWM:")
}

// RSS returns the server's current resident set size (VmRSS) in bytes.
func (s *Server) RSS() (int64, error) {
	return procStatusKiB(s.Pid(), "VmRSS:")
}

func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("harness rss: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib); err != nil {
				return 0, fmt.Errorf("harness rss: parse %q: %w", line, err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("harness rss: no %s in /proc/%d/status", field, pid)
}

// WaitReady polls GET /readyz until it answers 200 or ctx ends.
func WaitReady(ctx context.Context, hc *http.Client, url string) error {
	for {
		resp, err := hc.Get(url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Main is the TestMain of a suite that runs the real binary: it builds the
// binary once (see Build), stores its path in *bin, runs the tests, cleans
// up and exits with their status.
func Main(m *testing.M, bin *string) {
	b, cleanup, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}
