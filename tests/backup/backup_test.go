// Package backup tests `weaseldb backup` with the real binary: a backup that
// is stopped and resumed across a server restart, then restored by starting
// a server on it after the original is SIGKILLed.
package backup

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

// proc is a running `weaseldb backup`.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func startBackup(t *testing.T, url, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{}
	p.cmd = exec.Command(bin, append([]string{"backup", "--url", url, "--to", dir}, args...)...)
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

// stop sends SIGTERM; the backup must exit 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("backup exit: %v\n%s", err, p.log())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("backup did not exit 60s after SIGTERM\n%s", p.log())
	}
}

// backedUp returns the newest version in the backup directory (read live
// with weaseldb log stat).
func backedUp(t *testing.T, dir string) uint64 {
	t.Helper()
	out, err := exec.Command(bin, "log", "stat", "--json", "--data-dir", dir).Output()
	if err != nil {
		return 0 // not created yet
	}
	var st struct {
		NewestVersion uint64 `json:"newest_version"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("log stat: %v\n%s", err, out)
	}
	return st.NewestVersion
}

// waitBackedUp waits until the backup holds version v.
func waitBackedUp(t *testing.T, p *proc, dir string, v uint64) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := backedUp(t, dir)
		if got >= v {
			return
		}
		if p.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("backup holds version %d, want %d\n%s", got, v, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func commitN(t *testing.T, hc *http.Client, url, prefix string, n int, acked map[string]uint64) {
	t.Helper()
	for i := range n {
		rid := fmt.Sprintf("%s-%020d", prefix, i)
		code, ans, err := harness.Commit(context.Background(), hc, url, harness.CommitRequest{
			RequestID: rid,
			Operations: []harness.Op{
				{Type: "write", Key: "a2V5", Value: base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(i)))},
				{Type: "delete", Key: "b2xk"},
				{Type: "range_delete", Begin: "YQ==", End: "Yg=="},
			},
		})
		if err != nil || code != 200 {
			t.Fatalf("commit %s: HTTP %d %+v %v", rid, code, ans, err)
		}
		acked[rid] = ans.Version
	}
}

func version(t *testing.T, hc *http.Client, url string) uint64 {
	t.Helper()
	v, err := harness.Version(context.Background(), hc, url)
	if err != nil {
		t.Fatal(err)
	}
	return v.Version
}

func dump(t *testing.T, dir string, to uint64) string {
	t.Helper()
	out, err := exec.Command(bin, "log", "dump", "--data-dir", dir, "--to", fmt.Sprint(to)).Output()
	if err != nil {
		t.Fatalf("log dump %s: %v", dir, err)
	}
	return string(out)
}

// TestBackupResumeAndRestore: back up, stop the backup, commit and restart
// the server, resume the backup, then lose the server (SIGKILL) and start
// a new one on the backup: same versions, nothing missing, duplicates
// still recognised, and the new server continues after the last version.
func TestBackupResumeAndRestore(t *testing.T) {
	dataDir, backupDir := t.TempDir(), t.TempDir()+"/backup"
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Kill() }()
	hc := &http.Client{}
	acked := map[string]uint64{}
	commitN(t, hc, srv.URL, "first", 20, acked)

	b := startBackup(t, srv.URL, backupDir, "--retention-policy", "backup")
	waitBackedUp(t, b, backupDir, version(t, hc, srv.URL))
	b.stop(t)
	firstRun := backedUp(t, backupDir)

	// While the backup is down: more commits and a server restart.
	commitN(t, hc, srv.URL, "second", 15, acked)
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log())
	}
	if srv, err = harness.Start(harness.Options{Bin: bin, DataDir: dataDir}); err != nil {
		t.Fatal(err)
	}
	commitN(t, hc, srv.URL, "third", 10, acked)

	b = startBackup(t, srv.URL, backupDir, "--retention-policy", "backup")
	last := version(t, hc, srv.URL)
	waitBackedUp(t, b, backupDir, last)
	b.stop(t)
	if at := backedUpAtStart(t, b.log()); at != firstRun {
		t.Fatalf("the second backup run resumed after %d, the first stopped at %d:\n%s", at, firstRun, b.log())
	}
	policy, err := harness.ListRetention(context.Background(), hc, srv.URL)
	if err != nil || len(policy.Policies) != 1 || policy.Policies[0].PolicyID != "backup" {
		t.Fatalf("the backup's retention policy: %+v %v", policy, err)
	}

	// Disaster: the server is gone. Restore = start on the backup.
	srv.Kill()
	if a, b := dump(t, dataDir, last), dump(t, backupDir, last); a != b {
		t.Fatalf("the backup's transactions differ from the server's:\nserver:\n%s\nbackup:\n%s", a, b)
	}
	restored, err := harness.Start(harness.Options{Bin: bin, DataDir: backupDir})
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Kill()
	log, err := harness.ReadLog(context.Background(), hc, restored.URL, 0, last)
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]uint64{}
	for i, txn := range log {
		if txn.Version != uint64(i+1) {
			t.Fatalf("restored log not contiguous at index %d: version %d", i, txn.Version)
		}
		at[txn.RequestID] = txn.Version
	}
	for rid, v := range acked {
		if at[rid] != v {
			t.Errorf("MISSING after restore: %s acknowledged at %d, found at %d", rid, v, at[rid])
		}
	}
	// A retry of an acknowledged commit is recognised as a duplicate.
	code, ans, err := harness.Commit(context.Background(), hc, restored.URL, harness.CommitRequest{
		RequestID:  fmt.Sprintf("first-%020d", 3),
		Operations: []harness.Op{{Type: "write", Key: "a2V5", Value: "Mw=="}},
	})
	if err != nil || code != 200 || !ans.Duplicate || ans.Version != acked[fmt.Sprintf("first-%020d", 3)] {
		t.Fatalf("retry of an acknowledged commit on the restored server: %d %+v %v", code, ans, err)
	}
	// And new commits continue after the last version (its claim is last+1).
	next := map[string]uint64{}
	commitN(t, hc, restored.URL, "restored", 1, next)
	for _, v := range next {
		if v != last+2 {
			t.Fatalf("the restored server committed at %d, want %d (after %d and its claim)", v, last+2, last)
		}
	}
}

// backedUpAtStart reads the "after" of the backup's start line.
func backedUpAtStart(t *testing.T, log string) uint64 {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Msg   string `json:"msg"`
			After uint64 `json:"after"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "backup starting" {
			return rec.After
		}
	}
	t.Fatalf("no start line in the backup's log:\n%s", log)
	return 0
}

// TestBackupRefusesATruncatedLog: a new backup must start at version 1;
// on a server that truncated its log it exits 1 and says why instead of
// writing a backup with a hole at its start.
func TestBackupRefusesATruncatedLog(t *testing.T) {
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Config: `
[retention]
default_keep_versions = 5
truncate_interval = "10ms"
`})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	hc := &http.Client{}
	commitN(t, hc, srv.URL, "trunc", 30, map[string]uint64{})
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := harness.ListRetention(context.Background(), hc, srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if r.OldestRetainedVersion > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not truncate within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := startBackup(t, srv.URL, t.TempDir())
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		if code := b.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(b.log(), "truncated by retention") {
			t.Fatalf("backup of a truncated log: exit %d (%v), want 1 saying it was truncated:\n%s", code, err, b.log())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("backup of a truncated log still running after 60s:\n%s", b.log())
	}
}
