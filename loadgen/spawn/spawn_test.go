package spawn

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeServerSource is a tiny stand-in binary with the server's command line:
// it serves /readyz and /v1/version on --listen and exits with the status
// given by FAKE_EXIT on SIGTERM. Built from source for real, so Start and
// Stop exercise a real process, port, signal and exit status.
const fakeServerSource = `package main

import (
	"flag"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	listen := flag.String("listen", "", "")
	flag.String("data-dir", "", "")
	flag.String("persist", "", "")
	flag.String("config", "", "")
	flag.Parse()
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {})
	go http.ListenAndServe(*listen, nil)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	code, _ := strconv.Atoi(os.Getenv("FAKE_EXIT"))
	os.Exit(code)
}
`

func buildFake(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte(fakeServerSource), 0o644)
	bin := filepath.Join(dir, "fakeweaseldb")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fake server: %v\n%s", err, out)
	}
	return bin
}

func TestStartStopChecksExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := buildFake(t)
	s, err := Start(Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if _, err := os.Stat(s.DataDir); !os.IsNotExist(err) {
		t.Fatalf("temp dir left behind: %v", err)
	}

	t.Setenv("FAKE_EXIT", "3")
	s, err = Start(Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err == nil || !strings.Contains(err.Error(), "status 0") {
		t.Fatalf("exit 3 after SIGTERM not reported: %v", err)
	}
	os.RemoveAll(filepath.Dir(s.DataDir))
}

func TestStartReportsAMissingBinary(t *testing.T) {
	if _, err := Start(Options{Binary: filepath.Join(t.TempDir(), "nope")}); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("missing binary: %v", err)
	}
}
