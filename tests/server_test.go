package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/client"
)

// binPath is the weaseldb binary TestMain built for this run.
var binPath string

// notWired is what the binary says about a backend it does not have yet;
// tests of that backend are skipped rather than failed.
const notWired = "not wired"

// startTimeout bounds how long a server may take to become ready. Generous:
// the machine is shared and S3 backends recover over HTTP.
const startTimeout = 60 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weaseldb-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: temp dir:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "weaseldb")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goCmd, "build", "-o", binPath, "github.com/weaseldb/weaseldb/cmd/weaseldb")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: building weaseldb:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// conf is extra configuration: TOML lines by section name, e.g.
// conf{"commit": {`conflict_window = "1ms"`}}.
type conf map[string][]string

// spec says how to start a server: the persistence backend and extra
// configuration. The data directory and the [persist] section belong to the
// harness.
type spec struct {
	backend string // "disk" (default), "fakes3" or "s3"
	conf    conf
}

// server is one weaseldb data directory (or bucket) and the process
// currently serving it. restart keeps the data and starts a new process.
type server struct {
	t       *testing.T
	spec    spec
	dataDir string
	cfgPath string
	s3      *proc // the standalone fake S3 for backend "s3"
	proc    *proc
	URL     string
	C       *client.Client
	http    *http.Client
}

// startServer starts a server on 127.0.0.1:0 and waits until it is ready.
// It is stopped (SIGTERM, then SIGKILL) when the test ends.
func startServer(t *testing.T, sp spec) *server {
	t.Helper()
	if sp.backend == "" {
		sp.backend = "disk"
	}
	s := &server{t: t, spec: sp, dataDir: t.TempDir(), http: &http.Client{Timeout: 30 * time.Second}}
	if sp.backend == "s3" {
		p, err := startFakeS3(filepath.Join(s.dataDir, "s3"))
		if err != nil {
			if strings.Contains(err.Error(), notWired) {
				t.Skipf("backend s3: `weaseldb fakes3` is not wired in this binary yet: %v", err)
			}
			t.Fatalf("standalone fakes3: %v", err)
		}
		s.s3 = p
		t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	}
	s.cfgPath = filepath.Join(s.dataDir, "weaseldb.toml")
	if err := os.WriteFile(s.cfgPath, []byte(s.configText()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.proc == nil {
			return
		}
		if t.Failed() {
			t.Logf("server log (last lines):\n%s", s.proc.tail(40))
		}
		s.proc.stop(syscall.SIGTERM)
	})
	s.start()
	return s
}

func (s *server) configText() string {
	var b strings.Builder
	sections := map[string][]string{}
	for k, v := range s.spec.conf {
		sections[k] = append(sections[k], v...)
	}
	sections["server"] = append(sections["server"], `listen = "127.0.0.1:0"`, "pin_threads = false")
	switch s.spec.backend {
	case "disk", "fakes3":
		sections["persist"] = append(sections["persist"], fmt.Sprintf("backend = %q", s.spec.backend), fmt.Sprintf("dir = %q", filepath.Join(s.dataDir, "data")))
	case "s3":
		// dir holds the status index beside the log, for S3 too.
		sections["persist"] = append(sections["persist"], `backend = "s3"`, `bucket = "weaseldb"`, fmt.Sprintf("dir = %q", filepath.Join(s.dataDir, "data")),
			fmt.Sprintf("endpoint = %q", "http://"+s.s3.addr), "use_path_style = true",
			`access_key_id = "e2e"`, `secret_access_key = "e2e-secret"`, `request_timeout = "10s"`,
			// A restart after SIGKILL finds the dead process's lease and
			// waits for it to go stale (docs/operations.md): keep that short.
			`lease_timeout = "1s"`, `lease_renew_interval = "200ms"`, `replica_poll_interval = "50ms"`)
	}
	names := make([]string, 0, len(sections))
	for k := range sections {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "[%s]\n%s\n\n", k, strings.Join(sections[k], "\n"))
	}
	return b.String()
}

// start launches a process on the server's data and waits until it is
// ready; it fails the test if the process exits first.
func (s *server) start() {
	s.t.Helper()
	p, err := launch(binPath, "--config", s.cfgPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.proc = p
	addr, err := p.waitReady(startTimeout)
	if err != nil && s.spec.backend != "disk" && strings.Contains(p.logText(), notWired) {
		s.proc = nil
		s.t.Skipf("backend %s is not wired in this binary yet: %s", s.spec.backend, p.tail(1))
	}
	if err != nil {
		s.t.Fatalf("weaseldb did not start: %v\n%s", err, p.tail(40))
	}
	s.URL = "http://" + addr
	s.C = client.New(s.URL)
	if s.spec.backend == "s3" {
		// On S3 a server is ready to serve as soon as it listens, but it
		// leads only once it holds the lease (at once after a clean stop,
		// after lease_timeout after a SIGKILL): wait for /readyz.
		deadline := time.Now().Add(startTimeout)
		for {
			resp, err := http.Get(s.URL + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("weaseldb on s3 did not become the leader within %s\n%s", startTimeout, p.tail(40))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// stop sends sig, waits for the exit and returns the exit code.
func (s *server) stop(sig syscall.Signal) int {
	s.t.Helper()
	code, err := s.proc.stop(sig)
	if err != nil {
		s.t.Fatalf("stopping weaseldb: %v\n%s", err, s.proc.tail(40))
	}
	return code
}

// restart stops the server gracefully (it must exit 0) and starts a new
// process on the same data. The address changes.
func (s *server) restart() {
	s.t.Helper()
	if code := s.stop(syscall.SIGTERM); code != 0 {
		s.t.Fatalf("graceful stop exited %d\n%s", code, s.proc.tail(40))
	}
	s.start()
}

// proc is a running weaseldb process whose stderr (JSON log lines) is
// captured.
type proc struct {
	cmd    *exec.Cmd
	addr   string      // standalone fakes3 only: where it listens
	ready  chan string // the listen address, once
	exited chan struct{}

	mu    sync.Mutex
	lines []string
}

// launch starts the binary with args, capturing its output.
func launch(bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	p := &proc{cmd: cmd, ready: make(chan string, 1), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go p.readLog(out)
	return p, nil
}

func (p *proc) readLog(out io.Reader) {
	defer close(p.exited)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.lines = append(p.lines, line)
		p.mu.Unlock()
		if strings.Contains(line, `"weaseldb ready"`) {
			var rec struct {
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Listen != "" {
				p.ready <- rec.Listen
			}
		}
	}
	io.Copy(io.Discard, out)
	p.cmd.Wait()
}

// waitReady returns the listen address from the "weaseldb ready" log line.
func (p *proc) waitReady(timeout time.Duration) (string, error) {
	select {
	case addr := <-p.ready:
		return addr, nil
	case <-p.exited:
		return "", fmt.Errorf("exited with code %d before it was ready", p.cmd.ProcessState.ExitCode())
	case <-time.After(timeout):
		return "", fmt.Errorf("not ready after %s", timeout)
	}
}

// stop signals the process and waits for it (SIGKILL after a minute). It
// returns the exit code; -1 means killed by a signal.
func (p *proc) stop(sig syscall.Signal) (int, error) {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("signal %v: %w", sig, err)
	}
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.exited
		return p.cmd.ProcessState.ExitCode(), fmt.Errorf("did not exit within a minute of %v; killed", sig)
	}
}

// tail returns the last n log lines.
func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lines[max(0, len(p.lines)-n):]
	return strings.Join(l, "\n")
}

// logText returns every log line so far.
func (p *proc) logText() string { return p.tail(1 << 30) }

// startFakeS3 runs `weaseldb fakes3` on a free port and waits until it
// accepts connections.
func startFakeS3(dir string) (*proc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p, err := launch(binPath, "fakes3", "--listen", addr, "--dir", dir, "--buckets", "weaseldb")
	if err != nil {
		return nil, err
	}
	p.addr = addr
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("exited with code %d: %s", p.cmd.ProcessState.ExitCode(), p.tail(10))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop(syscall.SIGKILL)
	return nil, fmt.Errorf("not listening on %s after %s", addr, startTimeout)
}

// --- raw HTTP ---

// do sends a request and returns the status, headers and body.
func (s *server) do(method, path, contentType string, body []byte, header ...string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// obj is a decoded JSON object.
type obj map[string]any

func (o obj) str(k string) string {
	s, _ := o[k].(string)
	return s
}

func (o obj) num(k string) uint64 {
	f, _ := o[k].(float64)
	return uint64(f)
}

// doJSON sends a request and decodes the JSON answer (any status); a body
// that is not a JSON object fails the test.
func (s *server) doJSON(method, path, contentType string, body []byte, header ...string) (int, obj) {
	s.t.Helper()
	status, _, b := s.do(method, path, contentType, body, header...)
	if status == 204 {
		return status, nil
	}
	var o obj
	if err := json.Unmarshal(b, &o); err != nil {
		s.t.Fatalf("%s %s: answer %d is not a JSON object: %v: %q", method, path, status, err, b)
	}
	return status, o
}

// commitRaw posts a commit body as application/json.
func (s *server) commitRaw(body string) (int, obj) {
	s.t.Helper()
	return s.doJSON("POST", "/v1/commit", "application/json", []byte(body))
}

// version returns the latest committed version over raw HTTP.
func (s *server) version() uint64 {
	s.t.Helper()
	status, o := s.doJSON("GET", "/v1/version", "", nil)
	if status != 200 {
		s.t.Fatalf("GET /v1/version: %d %v", status, o)
	}
	return o.num("version")
}

// wantError checks API.md's error body: the status, the code and a message.
func wantError(t *testing.T, what string, status int, o obj, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || o.str("error") != wantCode || o.str("message") == "" {
		t.Errorf("%s: got %d %v, want %d with error %q and a message", what, status, o, wantStatus, wantCode)
	}
}

// eventually polls cond until it returns true or a generous deadline
// passes (then the test fails with what).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
