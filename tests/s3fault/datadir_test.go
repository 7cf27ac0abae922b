package s3fault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

// TestFakeS3DataDirLocked is issue 12 item 2: two servers on one
// --data-dir with --persist fakes3 each ran their own copy of the
// in-process fake S3 over the same files, both led and acknowledged the
// same versions, and a restart lost acknowledged commits. The second must
// now exit at once with an error naming the directory and the holder's
// pid, before touching the log, and the first must go on unharmed.
func TestFakeS3DataDirLocked(t *testing.T) {
	dir := t.TempDir()
	a, err := harness.Start(harness.Options{Bin: bin, DataDir: dir, Persist: "fakes3"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Kill()
	led := harness.NewLedger()
	hc := &http.Client{Timeout: 20 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				rid := fmt.Sprintf("datadir-%d-%012d", w, i)
				ops := []harness.Op{{Type: "write", Key: base64.StdEncoding.EncodeToString([]byte(rid)), Value: "dg=="}}
				led.Sent(rid, ops)
				code, ans, err := harness.Commit(ctx, hc, a.URL, harness.CommitRequest{RequestID: rid, Operations: ops})
				if err == nil && code == 200 && ans.Status == "committed" {
					led.Acked(rid, ans.Version)
					mu.Lock()
					acked++
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	b, err := harness.Start(harness.Options{Bin: bin, DataDir: dir, Persist: "fakes3"})
	if err == nil {
		b.Kill()
		cancel()
		wg.Wait()
		t.Fatal("a second server on the same --data-dir with --persist fakes3 started; want it refused")
	}
	if !errors.Is(err, harness.ErrExited) {
		t.Fatal(err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "in use by another server") || !strings.Contains(msg, "pid "+strconv.Itoa(a.Pid())) {
		t.Errorf("second server's error does not say the directory is in use by pid %d:\n%s", a.Pid(), msg)
	}
	if strings.Contains(msg, "s3log") || strings.Contains(msg, "engine") {
		t.Errorf("second server touched the log before refusing:\n%s", msg)
	}

	time.Sleep(300 * time.Millisecond) // the first keeps committing
	cancel()
	wg.Wait()
	if a.Exited() {
		t.Fatalf("the first server exited:\n%s", a.Log())
	}
	if acked == 0 {
		t.Fatal("no commit was acknowledged")
	}
	vctx, vcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer vcancel()
	if _, err := led.Verify(vctx, &http.Client{}, a.URL, nil); err != nil {
		t.Fatalf("first server after the refused second: %v", err)
	}
	// And after a restart on the directory.
	a.Kill()
	c, err := harness.Start(harness.Options{Bin: bin, DataDir: dir, Persist: "fakes3"})
	if err != nil {
		t.Fatalf("restart on the directory after the holder died: %v", err)
	}
	defer c.Kill()
	check, err := led.Verify(vctx, &http.Client{}, c.URL, nil)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	t.Logf("%d acknowledged; %+v", acked, check)
}
