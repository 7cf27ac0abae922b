package client_test

// The real weaseldb binary, for the end-to-end tests and the examples of
// this package: built once per test binary (or $WEASELDB_TEST_BIN), started
// on a free loopback port with a fresh data directory.

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
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverURL is the base URL of the weaseldb the examples talk to (TestMain
// starts it), e.g. "http://127.0.0.1:8080".
var serverURL string

var binary struct {
	once sync.Once
	path string
	dir  string // removed by TestMain; empty with $WEASELDB_TEST_BIN
	err  error
}

// weaseldbBinary builds ./cmd/weaseldb once (the tests run in client/, one
// below the module root).
func weaseldbBinary() (string, error) {
	binary.once.Do(func() {
		if b := os.Getenv("WEASELDB_TEST_BIN"); b != "" {
			binary.path = b
			return
		}
		dir, err := os.MkdirTemp("", "weaseldb-client-bin-")
		if err != nil {
			binary.err = err
			return
		}
		binary.dir, binary.path = dir, filepath.Join(dir, "weaseldb")
		cmd := exec.Command("go", "build", "-o", binary.path, "./cmd/weaseldb")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build ./cmd/weaseldb: %w\n%s", err, out)
		}
	})
	return binary.path, binary.err
}

// server is a running weaseldb process.
type server struct {
	URL  string
	dir  string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// startServer starts weaseldb with env added to its environment and waits
// until /readyz answers 200.
func startServer(env ...string) (*server, error) {
	bin, err := weaseldbBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "weaseldb-client-e2e-")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	s := &server{URL: "http://" + addr, dir: dir, log: logf, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--persist", "disk")
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("weaseldb exited before ready:\n%s", s.logText())
		default:
		}
		if resp, err := hc.Get(s.URL + "/readyz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, errors.New("weaseldb not ready within 60s:\n" + s.logText())
}

// realServer starts a server for one test and stops it at the end.
func realServer(t testing.TB, env ...string) *server {
	t.Helper()
	s, err := startServer(env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", s.logText())
		}
		s.stop()
	})
	return s
}

func (s *server) logText() string {
	b, _ := os.ReadFile(s.log.Name())
	return string(b)
}

// stop ends the server gracefully (SIGKILL after 30s) and removes its files.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Close()
	os.RemoveAll(s.dir)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// downURL returns the URL of a loopback port nobody listens on: connections
// to it are refused.
func downURL(t testing.TB) string {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func TestMain(m *testing.M) {
	code := func() int {
		s, err := startServer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "examples' server:", err)
			return 1
		}
		defer s.stop()
		serverURL = s.URL
		return m.Run()
	}()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// ctxT is a context for one end-to-end test: generous, never a timing
// assertion.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
