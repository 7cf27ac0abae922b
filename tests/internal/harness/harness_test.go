package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeServer writes a shell script standing in for the server binary.
func fakeServer(t *testing.T, script string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fake-weaseldb")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestStartFailureKeepsTheWholeLog: a server that exits before it is ready
// after a line longer than any buffer must still have its last words (the
// reason it exited) and its exit status in Start's error; a reader that
// gave up on the long line lost them, and the failure read "exit status 1"
// with no reason.
func TestStartFailureKeepsTheWholeLog(t *testing.T) {
	bin := fakeServer(t, `head -c 17000000 /dev/zero | tr '\0' x >&2
echo >&2
echo '{"level":"ERROR","msg":"weaseldb stopped","err":"the reason"}' >&2
echo 'on stdout' 
exit 1`)
	_, err := Start(Options{Bin: bin, DataDir: t.TempDir()})
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Start: %v, want ErrExited", err)
	}
	msg := err.Error()
	for _, want := range []string{"exit status 1", "the reason", "more bytes of this line not kept", "on stdout"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Start's error lacks %q:\n%.300s ... %s", want, msg, msg[max(0, len(msg)-300):])
		}
	}
}

// TestStartFailureWithoutOutputSaysSo: a server that exits silently gets
// an error saying it wrote nothing, not an empty log.
func TestStartFailureWithoutOutputSaysSo(t *testing.T) {
	_, err := Start(Options{Bin: fakeServer(t, "exit 1"), DataDir: t.TempDir()})
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "wrote nothing") {
		t.Fatalf("Start: %v, want ErrExited saying it wrote nothing", err)
	}
}
