package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

// newestLogFile returns the path of the newest log file in dir.
func newestLogFile(t *testing.T, dir string) string {
	t.Helper()
	names := segments(t, dir)
	if len(names) == 0 {
		t.Fatalf("no log file in %s", dir)
	}
	return names[len(names)-1]
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func metrics(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// expectRefused commits after the damage: none may be acknowledged (a 200
// would be a commit only a vanished file holds); 503 is the answer.
func expectRefused(t *testing.T, hc *http.Client, srv *harness.Server, prefix string) {
	t.Helper()
	got503 := 0
	for i := range 10 {
		rid := fmt.Sprintf("%s-%020d", prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code, ans, err := harness.Commit(ctx, hc, srv.URL, harness.CommitRequest{
			RequestID:  rid,
			Operations: []harness.Op{{Type: "write", Key: "a2V5", Value: "bG9zdA=="}},
		})
		cancel()
		switch {
		case err != nil:
			t.Fatalf("commit %s after the damage: %v\n%s", rid, err, srv.Log())
		case code == 200:
			t.Fatalf("commit %s after the damage was acknowledged at version %d: it lives only in a file no restart will find\n%s", rid, ans.Version, srv.Log())
		case code == 503:
			got503++
		default:
			t.Fatalf("commit %s after the damage: HTTP %d, want 503", rid, code)
		}
	}
	if got503 == 0 {
		t.Fatal("no commit answered 503 after the damage")
	}
}

// waitNotReady polls /readyz until it answers 503 saying want.
func waitNotReady(t *testing.T, hc *http.Client, srv *harness.Server, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := readyz(t, hc, srv.URL)
		if code == 503 && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s 60s after the damage; want 503 saying %q\n%s", code, body, want, srv.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expectRestartRefused stops srv and checks a restart on dir refuses,
// naming the marker.
func expectRestartRefused(t *testing.T, srv *harness.Server, dir string) {
	t.Helper()
	srv.Stop(30 * time.Second) // its drain fails: the log is damaged
	_, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err == nil {
		t.Fatal("the server restarted on a damaged log (it would hand acknowledged versions out again)")
	}
	if !errors.Is(err, harness.ErrExited) || !strings.Contains(err.Error(), "DAMAGED") {
		t.Fatalf("restart on a damaged log: want an exit naming the DAMAGED marker, got %v", err)
	}
	if !strings.Contains(err.Error(), "permanent error, not retried") || strings.Contains(err.Error(), "retrying") {
		t.Fatalf("a permanent refusal must be said so and not retried:\n%v", err)
	}
}

// The damage tests catch a server without the checks: see
// persist/disk/planted_on.go (build tag planted_damage).

// TestLogFileDeletedUnderServer removes the newest log file under a running
// server (issue 12, item 3: the server went on answering 200 and the
// restart lost them and reused their versions). Commits must answer 503,
// /readyz must say why, the restart must refuse, and restoring the rescued
// copy must bring back every acknowledged commit.
func TestLogFileDeletedUnderServer(t *testing.T) {
	dir := t.TempDir()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	hc := &http.Client{}
	acked := commitN(t, hc, srv.URL, "before-rm", 20)
	victim := newestLogFile(t, dir)
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, hc, srv, "after-rm")
	waitNotReady(t, hc, srv, "deleted")
	if m := metrics(t, hc, srv.URL); !strings.Contains(m, "\nweaseldb_persist_damaged 1\n") {
		t.Fatalf("/metrics does not report the damage:\n%s", m)
	}
	if !strings.Contains(srv.Log(), "was deleted while the server ran") {
		t.Fatalf("the server's log does not say the file was deleted:\n%s", srv.Log())
	}
	expectRestartRefused(t, srv, dir)

	// The operator restores the rescued copy and removes the marker.
	if err := os.Rename(victim+".rescued", victim); err != nil {
		t.Fatalf("restore the rescued copy: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "DAMAGED")); err != nil {
		t.Fatal(err)
	}
	srv2, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Kill()
	for rid, v := range commitN(t, hc, srv2.URL, "after-restore", 3) {
		acked[rid] = v
	}
	checkAcked(t, hc, srv2.URL, acked)
}

// TestLogFileCutUnderServer cuts 10 bytes off the newest log file of an idle
// server: the periodic check must find it, and the restart must refuse. Once
// the operator accepts the loss (removes the marker), recovery must not
// claim the cut frame was never acknowledged.
func TestLogFileCutUnderServer(t *testing.T) {
	dir := t.TempDir()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	hc := &http.Client{}
	commitN(t, hc, srv.URL, "before-cut", 20)
	victim := newestLogFile(t, dir)
	st, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(victim, st.Size()-10); err != nil {
		t.Fatal(err)
	}
	waitNotReady(t, hc, srv, "was cut to")
	expectRefused(t, hc, srv, "after-cut")
	expectRestartRefused(t, srv, dir)

	if err := os.Remove(filepath.Join(dir, "DAMAGED")); err != nil {
		t.Fatal(err)
	}
	srv2, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Kill()
	if strings.Contains(srv2.Log(), "never acknowledged\"") || !strings.Contains(srv2.Log(), "cut short") {
		t.Fatalf("recovery of a cut file must say it cannot tell a torn write from a cut:\n%s", srv2.Log())
	}
}

// TestLogFileCutWhileStopped cuts 10 bytes off the newest log file of a
// cleanly stopped server (issue 12, item 3: the restart lost acknowledged
// commits and called them a torn tail). The clean stop recorded the synced
// sizes, so the restart refuses, naming the file; accepting the loss
// (removing SIZES) starts with the cut.
func TestLogFileCutWhileStopped(t *testing.T) {
	dir := t.TempDir()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	commitN(t, &http.Client{}, srv.URL, "before-stop", 20)
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log())
	}
	victim := newestLogFile(t, dir)
	st, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(victim, st.Size()-10); err != nil {
		t.Fatal(err)
	}
	_, err = harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "cut while no server ran") || !strings.Contains(err.Error(), filepath.Base(victim)) ||
		!strings.Contains(err.Error(), "permanent error, not retried") {
		t.Fatalf("restart after a cut of a cleanly stopped log: want a refusal naming %s, got %v", filepath.Base(victim), err)
	}
	if err := os.Remove(filepath.Join(dir, "SIZES")); err != nil {
		t.Fatal(err)
	}
	srv2, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Kill()
	if !strings.Contains(srv2.Log(), "cut short") {
		t.Fatalf("recovery after the loss was accepted does not say what it cut:\n%s", srv2.Log())
	}
}
