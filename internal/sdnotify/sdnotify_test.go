package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a fake NOTIFY_SOCKET, as systemd does.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Notify(Ready + "\nSTATUS=serving"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); got != "READY=1\nSTATUS=serving" {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "weaseldb-sdnotify-test-" + strings.ReplaceAll(t.TempDir(), "/", "-")
	c := listen(t, "@"+name) // Go maps a leading @ to the abstract namespace
	if err := NotifySocket("@"+name, Stopping); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); got != Stopping {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(Ready); err != nil {
		t.Fatalf("no NOTIFY_SOCKET: %v, want nil", err)
	}
	if err := NotifySocket("relative/path", Ready); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET must be refused")
	}
}
