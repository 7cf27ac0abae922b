// Package systemd tests the service integration with the real binary: the
// readiness protocol over a fake NOTIFY_SOCKET (READY=1 only once the
// server answers, STOPPING=1 when it drains), and that
// contrib/systemd/weaseldb.service passes `systemd-analyze verify` where
// systemd-analyze exists.
package systemd

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestReadyAndStoppingNotifications(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Env: []string{"NOTIFY_SOCKET=" + sock}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	ready := receive(t, c)
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, srv.Addr) {
		t.Fatalf("first notification %q, want READY=1 naming %s", ready, srv.Addr)
	}
	// READY=1 promises a server that answers: it is sent after SetReady.
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz after READY=1: %d", resp.StatusCode)
	}
	code, _, err := harness.Commit(context.Background(), http.DefaultClient, srv.URL, harness.CommitRequest{
		RequestID: "systemd-ready-000000000001", Operations: []harness.Op{{Type: "write", Key: "a2V5", Value: "dg=="}}})
	if err != nil || code != 200 {
		t.Fatalf("commit after READY=1: %d %v", code, err)
	}
	srv.Cmd.Process.Signal(syscall.SIGTERM)
	if got := receive(t, c); !strings.HasPrefix(got, "STOPPING=1") {
		t.Fatalf("notification on SIGTERM %q, want STOPPING=1", got)
	}
	if err := srv.Wait(60 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.Log())
	}
}

func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	unit, err := os.ReadFile("../../contrib/systemd/weaseldb.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("Type=notify")) {
		t.Fatal("the unit is not Type=notify")
	}
	// verify checks that ExecStart exists: point it at the built binary.
	path := filepath.Join(t.TempDir(), "weaseldb.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/weaseldb"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("weaseldb.service")) {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
