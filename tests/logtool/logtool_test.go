// Package logtool tests `weaseldb log stat|verify|dump|copy` with the real
// binary on real data: data directories written by a running server (cleanly
// stopped, or SIGKILLed under load), one with a corrupted middle frame, one
// with a cut tail, and an S3 prefix on a `weaseldb fakes3` process.
package logtool

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

// tool runs `weaseldb log ARGS...` and returns its output and exit status.
func tool(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"log"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("weaseldb log %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// mustTool runs the tool and fails unless it exits 0.
func mustTool(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := tool(t, args...)
	if code != 0 {
		t.Fatalf("weaseldb log %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

// commitAll commits n transactions one by one (each its own segment) with
// a write under "k/" and a range delete, and returns request id → version.
func commitAll(t *testing.T, hc *http.Client, url, prefix string, n int) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64, n)
	for i := range n {
		rid := fmt.Sprintf("%s-%020d", prefix, i)
		key := []string{"ay8x", "ay8y", "bS8x"}[i%3] // k/1, k/2, m/1
		code, ans, err := harness.Commit(context.Background(), hc, url, harness.CommitRequest{
			RequestID: rid,
			Operations: []harness.Op{
				{Type: "write", Key: key, Value: "dmFsdWU="},
				{Type: "range_delete", Begin: "YQ==", End: "bA=="}, // [a, l)
			},
		})
		if err != nil || code != 200 {
			t.Fatalf("commit %s: HTTP %d %+v %v", rid, code, ans, err)
		}
		out[rid] = ans.Version
	}
	return out
}

// serverData runs a disk server, commits n transactions, sets a retention
// policy, stops it cleanly, and returns the directory and what was acked.
func serverData(t *testing.T, n int) (string, map[string]uint64) {
	t.Helper()
	dir := t.TempDir()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	hc := &http.Client{}
	acked := commitAll(t, hc, srv.URL, "data", n)
	if code, err := harness.PutRetention(context.Background(), hc, srv.URL, "reader-1", 0); err != nil || code != 200 {
		t.Fatalf("put retention: %d %v", code, err)
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log())
	}
	return dir, acked
}

type statJSON struct {
	Segments              int               `json:"segments"`
	Transactions          uint64            `json:"transactions"`
	NewestVersion         uint64            `json:"newest_version"`
	OldestRetainedVersion uint64            `json:"oldest_retained_version"`
	RetentionPolicies     map[string]uint64 `json:"retention_policies"`
	LeaderTerms           []struct {
		LeaderID     string `json:"leader_id"`
		FirstVersion uint64 `json:"first_version"`
	} `json:"leader_terms"`
	Server string `json:"server"`
}

type verifyJSON struct {
	OK       bool `json:"ok"`
	Problems []struct {
		Where, Problem string
	} `json:"problems"`
	Repairs []struct {
		Where, Problem string
	} `json:"repairs"`
}

func maxVersion(acked map[string]uint64) uint64 {
	var m uint64
	for _, v := range acked {
		m = max(m, v)
	}
	return m
}

// subscribeLines returns the data lines of /v1/subscribe?after=0&QUERY up to
// and including version upTo.
func subscribeLines(t *testing.T, url, query string, upTo uint64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/subscribe?after=0"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var head struct {
			Version          uint64 `json:"version"`
			CommittedVersion uint64 `json:"committed_version"`
		}
		if err := json.Unmarshal([]byte(data), &head); err != nil {
			t.Fatalf("subscribe: %v in %s", err, data)
		}
		if event == "checkpoint" {
			if head.CommittedVersion >= upTo {
				return lines
			}
			continue
		}
		if head.Version > upTo {
			return lines
		}
		lines = append(lines, data)
	}
	t.Fatalf("subscribe ended: %v", sc.Err())
	return nil
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestToolsOnServerData: stat, verify and dump a directory a real server
// wrote; dump's lines are byte for byte the server's /v1/subscribe events,
// with and without filters.
func TestToolsOnServerData(t *testing.T) {
	dir, acked := serverData(t, 30)
	newest := maxVersion(acked)

	var st statJSON
	if err := json.Unmarshal([]byte(mustTool(t, "stat", "--data-dir", dir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.NewestVersion != newest || st.Transactions != newest || st.OldestRetainedVersion != 0 ||
		len(st.LeaderTerms) != 1 || st.LeaderTerms[0].FirstVersion != 0 || st.RetentionPolicies["reader-1"] != 0 || len(st.RetentionPolicies) != 1 {
		t.Fatalf("stat: %+v; want newest %d, %d transactions, one term from 0, policy reader-1", st, newest, newest)
	}
	text := mustTool(t, "stat", "--data-dir", dir)
	if !strings.Contains(text, fmt.Sprintf("versions        0..%d", newest)) {
		t.Fatalf("stat text:\n%s", text)
	}
	var ver verifyJSON
	if err := json.Unmarshal([]byte(mustTool(t, "verify", "--data-dir", dir, "--json")), &ver); err != nil || !ver.OK {
		t.Fatalf("verify of a clean log: %+v %v", ver, err)
	}
	dumpAll := splitLines(mustTool(t, "dump", "--data-dir", dir))
	dumpK := splitLines(mustTool(t, "dump", "--data-dir", dir, "--begin", "aw==", "--end", "bA==")) // [k, l)
	dumpMid := splitLines(mustTool(t, "dump", "--data-dir", dir, "--from", "10", "--to", "12"))
	rid := fmt.Sprintf("data-%020d", 7)
	dumpRID := splitLines(mustTool(t, "dump", "--data-dir", dir, "--request-id", rid))

	// The server's own events for the same versions (a restart adds its
	// claim after them).
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	if want := subscribeLines(t, srv.URL, "", newest); !slices.Equal(dumpAll, want) {
		t.Fatalf("dump differs from /v1/subscribe:\ndump:\n%s\nsubscribe:\n%s", strings.Join(dumpAll, "\n"), strings.Join(want, "\n"))
	}
	if want := subscribeLines(t, srv.URL, "&begin=aw%3D%3D&end=bA%3D%3D", newest); !slices.Equal(dumpK, want) || len(want) == 0 {
		t.Fatalf("dump --begin/--end differs from /v1/subscribe with begin/end:\ndump:\n%s\nsubscribe:\n%s", strings.Join(dumpK, "\n"), strings.Join(want, "\n"))
	}
	if len(dumpMid) != 3 || !strings.HasPrefix(dumpMid[0], `{"version":10,"prev_version":9,`) {
		t.Fatalf("dump --from 10 --to 12:\n%s", strings.Join(dumpMid, "\n"))
	}
	if len(dumpRID) != 1 || !strings.Contains(dumpRID[0], fmt.Sprintf(`"version":%d,`, acked[rid])) {
		t.Fatalf("dump --request-id %s (acked at %d):\n%s", rid, acked[rid], strings.Join(dumpRID, "\n"))
	}

	// A running server holds the directory: named; copy refuses.
	_, errOut, code := tool(t, "stat", "--data-dir", dir)
	if code != 0 || !strings.Contains(errOut, fmt.Sprintf("process %d", srv.Pid())) {
		t.Fatalf("stat of a live directory: exit %d, stderr %q; want a warning naming process %d", code, errOut, srv.Pid())
	}
	_, errOut, code = tool(t, "copy", "--data-dir", dir, "--to-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("process %d", srv.Pid())) {
		t.Fatalf("copy of a live directory: exit %d, stderr %q; want a refusal naming process %d", code, errOut, srv.Pid())
	}
}

// TestVerifyCorruptMiddleFrame: verify names the damaged frame by file and
// offset and exits 1, as recovery refuses it; the log is left as it was.
func TestVerifyCorruptMiddleFrame(t *testing.T) {
	dir, _ := serverData(t, 20)
	in, err := disk.Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	victim := in.Frames[len(in.Frames)/2]
	path := filepath.Join(dir, victim.File)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[victim.Offset+int64(victim.Header.Bytes)-3] ^= 0x40
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s offset %d", victim.File, victim.Offset)
	out, _, code := tool(t, "verify", "--data-dir", dir)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "the first: "+want) {
		t.Fatalf("verify of a corrupt middle frame: exit %d, want 1 naming %q:\n%s", code, want, out)
	}
	out, _, _ = tool(t, "verify", "--data-dir", dir, "--json")
	var ver verifyJSON
	if err := json.Unmarshal([]byte(out), &ver); err != nil || ver.OK || len(ver.Problems) == 0 || ver.Problems[0].Where != want {
		t.Fatalf("verify --json: %+v %v; want problems[0].where %q", ver, err, want)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Fatal("verify changed the log")
	}
	// Recovery agrees: the server refuses the same frame.
	_, err = harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("the server should refuse the frame verify named (%s): %v", want, err)
	}
	// And copy refuses the source.
	if _, errOut, code := tool(t, "copy", "--data-dir", dir, "--to-dir", t.TempDir()); code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("copy of a corrupt log: exit %d %s", code, errOut)
	}
}

// TestVerifyTornTailAfterKill: a directory left by SIGKILL under load, then
// cut mid-frame: verify exits 0, reports the cut as the repair recovery
// makes, at the offset recovery then cuts.
func TestVerifyTornTailAfterKill(t *testing.T) {
	dir := t.TempDir()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	commitAll(t, hc, srv.URL, "pre", 10)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				harness.Commit(ctx, hc, srv.URL, harness.CommitRequest{
					RequestID:  fmt.Sprintf("load-%d-%015d", w, i),
					Operations: []harness.Op{{Type: "write", Key: "bG9hZA==", Value: "eA=="}},
				})
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // some load; the kill lands wherever it lands
	srv.Kill()
	cancel()
	wg.Wait()

	var ver verifyJSON
	if err := json.Unmarshal([]byte(mustTool(t, "verify", "--data-dir", dir, "--json")), &ver); err != nil || !ver.OK {
		t.Fatalf("verify after SIGKILL: %+v %v", ver, err)
	}
	in, err := disk.Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The physically last frame (the newest by version may sit earlier:
	// writes complete out of order).
	last := slices.MaxFunc(in.Frames, func(a, b disk.InspectedFrame) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Offset, b.Offset)
	})
	path := filepath.Join(dir, last.File)
	if err := os.Truncate(path, last.Offset+int64(last.Header.Bytes)-10); err != nil {
		t.Fatal(err)
	}
	out, _, code := tool(t, "verify", "--data-dir", dir)
	want := fmt.Sprintf("%s offset %d", last.File, last.Offset)
	if code != 0 || !strings.Contains(out, "REPAIR   "+want) || !strings.Contains(out, "recovery would cut") {
		t.Fatalf("verify of a cut tail: exit %d, want 0 with a repair at %q:\n%s", code, want, out)
	}
	srv2, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Kill()
	if !strings.Contains(srv2.Log(), fmt.Sprintf(`"file":%q,"offset":%d`, last.File, last.Offset)) {
		t.Fatalf("recovery did not cut where verify said (%s):\n%s", want, srv2.Log())
	}
}

// fakeS3 runs `weaseldb fakes3` and returns its URL.
func fakeS3(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(bin, "fakes3", "--listen", "127.0.0.1:0", "--buckets", "weaseldb", "--dir", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if url, ok := strings.CutPrefix(sc.Text(), "fakes3 listening on "); ok {
			go func() {
				for sc.Scan() {
				}
			}()
			return url
		}
	}
	t.Fatalf("weaseldb fakes3 did not say where it listens: %v", sc.Err())
	return ""
}

func s3Config(t *testing.T, endpoint, prefix string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s3.toml")
	text := fmt.Sprintf(`
[persist]
backend = "s3"
bucket = "weaseldb"
prefix = %q
endpoint = %q
use_path_style = true
access_key_id = "test"
secret_access_key = "test"
`, prefix, endpoint)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCopyDiskToS3AndBack moves a log to an S3 prefix on `weaseldb fakes3`
// and back; servers on each copy continue the same versions with every
// acknowledged commit, and a target already holding a log is refused.
func TestCopyDiskToS3AndBack(t *testing.T) {
	dir, acked := serverData(t, 25)
	endpoint := fakeS3(t)
	cfg := s3Config(t, endpoint, "moved")
	out := mustTool(t, "copy", "--data-dir", dir, "--to-s3", "s3://weaseldb/moved", "--to-config", cfg)
	if !strings.Contains(out, "read back and verified") {
		t.Fatalf("copy: %s", out)
	}
	if _, errOut, code := tool(t, "copy", "--data-dir", dir, "--to-s3", "s3://weaseldb/moved", "--to-config", cfg); code != 1 || !strings.Contains(errOut, "already holds a log") {
		t.Fatalf("second copy to the same prefix: exit %d %s; want a refusal", code, errOut)
	}
	var st statJSON
	if err := json.Unmarshal([]byte(mustTool(t, "stat", "--config", cfg, "--json")), &st); err != nil || st.NewestVersion != maxVersion(acked) || st.RetentionPolicies["reader-1"] != 0 {
		t.Fatalf("stat of the S3 copy: %+v %v", st, err)
	}
	mustTool(t, "verify", "--config", cfg)
	if _, err := os.Stat("data"); err == nil {
		t.Fatal("the tools left files behind in the working directory (./data: a segment cache?)")
	}
	if a, b := mustTool(t, "dump", "--data-dir", dir), mustTool(t, "dump", "--config", cfg); a != b {
		t.Fatalf("dump of the S3 copy differs from the source:\n%s\n---\n%s", a, b)
	}

	// A damaged object in the middle: verify names its key.
	key := fmt.Sprintf("moved/log/%020d", maxVersion(acked)/2)
	corruptObject(t, endpoint+"/weaseldb/"+key)
	out, _, code := tool(t, "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "the first: "+key) {
		t.Fatalf("verify of an S3 log with a damaged object %s: exit %d\n%s", key, code, out)
	}
	corruptObject(t, endpoint+"/weaseldb/"+key) // flip it back

	// S3 back to disk.
	back := filepath.Join(t.TempDir(), "back")
	mustTool(t, "copy", "--config", cfg, "--to-dir", back)
	if _, errOut, code := tool(t, "copy", "--config", cfg, "--to-dir", back); code != 1 || !strings.Contains(errOut, "already holds a log") {
		t.Fatalf("second copy to the same directory: exit %d %s; want a refusal", code, errOut)
	}

	// Servers on both copies continue the same versions.
	for _, o := range []harness.Options{
		{Bin: bin, DataDir: t.TempDir(), Config: readFile(t, cfg)},
		{Bin: bin, DataDir: back},
	} {
		srv, err := harness.Start(o)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{}
		next := commitAll(t, hc, srv.URL, "after-copy", 1)
		for _, v := range next {
			if v != maxVersion(acked)+2 { // after the restart's claim
				t.Errorf("a server on the copy committed at %d, want %d", v, maxVersion(acked)+2)
			}
		}
		log, err := harness.ReadLog(context.Background(), hc, srv.URL, 0, maxVersion(acked))
		if err != nil {
			t.Fatal(err)
		}
		at := map[string]uint64{}
		for _, txn := range log {
			at[txn.RequestID] = txn.Version
		}
		for rid, v := range acked {
			if at[rid] != v {
				t.Errorf("LOST in the copy: %s acknowledged at %d, found at %d", rid, v, at[rid])
			}
		}
		srv.Stop(30 * time.Second)
	}
}

// corruptObject flips one bit near the end of an object on the fake S3
// (plain HTTP: the fake takes unsigned requests).
func corruptObject(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	data[len(data)-2] ^= 0x10
	req, _ := http.NewRequest("PUT", url, bytes.NewReader(data))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT %s: %d", url, resp.StatusCode)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHelp: every command has --help and exits 0 with it.
func TestHelp(t *testing.T) {
	for _, c := range []string{"stat", "verify", "dump", "copy"} {
		out := mustTool(t, c, "--help")
		if !strings.Contains(out, "weaseldb log "+c) {
			t.Errorf("weaseldb log %s --help:\n%s", c, out)
		}
	}
	if out := mustTool(t, "--help"); !strings.Contains(out, "stat") {
		t.Errorf("weaseldb log --help:\n%s", out)
	}
	if _, _, code := tool(t, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
