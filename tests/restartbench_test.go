package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/client"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/tx"
)

// Restart-time measurements (issue 12 items 4 and 16), opt-in: they write
// millions of transactions. They print figures and assert nothing about
// time. bench/results/reliability.md records them.
//
//	WEASELDB_RESTART_BENCH_TXNS=2700000 go test -count=1 -v -run TestRestartTimeDisk ./tests/
//	WEASELDB_RESTART_BENCH_FAKES3_TXNS=78000 go test -count=1 -v -run TestRestartTimeFakeS3 ./tests/

// recoverySeconds returns the recovery_seconds of the last "engine:
// leader" line of the server's log.
func recoverySeconds(t *testing.T, s *server) float64 {
	t.Helper()
	lines := strings.Split(s.proc.logText(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], `"engine: leader"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatalf("log line %q: %v", lines[i], err)
		}
		f, _ := m["recovery_seconds"].(float64)
		return f
	}
	t.Fatal("no engine: leader line in the log")
	return 0
}

func benchTxns(t *testing.T, env string) int {
	v := os.Getenv(env)
	if v == "" {
		t.Skipf("set %s to run", env)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive count", env, v)
	}
	return n
}

// writeDiskLog writes n transactions (a 36-byte request id and one 16-byte
// write each) in segments of 10,000 straight to a disk log in dir.
func writeDiskLog(t *testing.T, dir string, n int) {
	t.Helper()
	l, err := disk.Open(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	leader := []byte("00000000000000000000000000000001")
	if err := l.Append(ctx, persist.EncodeSegment(nil, leader, nil)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	txns := make([]tx.Transaction, 0, 10000)
	var buf []byte
	for v := 1; v <= n; {
		txns = txns[:0]
		for ; len(txns) < cap(txns) && v <= n; v++ {
			txns = append(txns, tx.Transaction{
				Version: tx.Version(v), RequestID: fmt.Appendf(nil, "restart-bench-%022d", v), TimestampUnixNano: now,
				Operations: []tx.Operation{{Type: tx.OpWrite, Key: fmt.Appendf(nil, "key-%012d", v%100000), Value: []byte("value-0123456789")}},
			})
		}
		buf = persist.EncodeSegment(buf[:0], leader, txns)
		if err := l.Append(ctx, buf); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestartTimeDisk: a disk log of N transactions, all inside the
// status window; recovery time of the first start (no status directory
// yet: the window is read from the log once), of a graceful restart, and
// of a restart after SIGKILL, with the default conflict window and with
// a small one (to show the status index's own part).
func TestRestartTimeDisk(t *testing.T) {
	n := benchTxns(t, "WEASELDB_RESTART_BENCH_TXNS")
	for _, cw := range []string{"", "conflict_window_versions = 100000"} {
		t.Run(fmt.Sprintf("conflict_window=%q", cw), func(t *testing.T) {
			var commit []string
			if cw != "" {
				commit = append(commit, cw)
			}
			s := &server{t: t, spec: spec{backend: "disk", conf: conf{"commit": commit}}, dataDir: t.TempDir(), http: &http.Client{Timeout: 30 * time.Second}}
			start := time.Now()
			writeDiskLog(t, filepath.Join(s.dataDir, "data"), n)
			t.Logf("wrote %d transactions in %v", n, time.Since(start).Round(time.Millisecond))
			s.cfgPath = filepath.Join(s.dataDir, "weaseldb.toml")
			if err := os.WriteFile(s.cfgPath, []byte(s.configText()), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if s.proc != nil {
					s.proc.stop(syscall.SIGTERM)
				}
			})
			s.start()
			t.Logf("first start: recovery %.2f s", recoverySeconds(t, s))
			s.restart()
			t.Logf("graceful restart: recovery %.2f s", recoverySeconds(t, s))
			ctx := context.Background()
			for i := range 1000 {
				if _, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("after", i)), nil)); err != nil {
					t.Fatal(err)
				}
			}
			s.stop(syscall.SIGKILL)
			s.start()
			t.Logf("restart after SIGKILL: recovery %.2f s", recoverySeconds(t, s))
			dup, err := s.C.Commit(ctx, client.NewTxn().RequestID(fmt.Sprintf("restart-bench-%022d", 1)).Write([]byte("x"), nil))
			if err != nil || !dup.Duplicate || dup.Version != 1 {
				t.Fatalf("retry of the first request id: %+v %v, want a duplicate at 1", dup, err)
			}
		})
	}
}

// TestRestartTimeFakeS3: N transactions committed through the server on
// the fakes3 backend (16 committers, so many small segments), then the
// recovery time of a graceful restart and of a restart after SIGKILL.
func TestRestartTimeFakeS3(t *testing.T) {
	n := benchTxns(t, "WEASELDB_RESTART_BENCH_FAKES3_TXNS")
	s := startServer(t, spec{backend: "fakes3"})
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("k", i%1000)), []byte("v"))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("committed %d transactions in %v", n, time.Since(start).Round(time.Millisecond))
	s.restart()
	t.Logf("graceful restart: recovery %.2f s", recoverySeconds(t, s))
	s.restart()
	t.Logf("second graceful restart: recovery %.2f s", recoverySeconds(t, s))
	s.stop(syscall.SIGKILL)
	s.start()
	t.Logf("restart after SIGKILL: recovery %.2f s", recoverySeconds(t, s))
}
