package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// commitN commits n empty-write transactions one by one and returns the
// last version.
func commitN(t *testing.T, s *server, n int) uint64 {
	t.Helper()
	var v uint64
	for i := 0; i < n; i++ {
		status, o := s.commitRaw(`{"operations":[{"type":"write","key":"` + b64("k") + `","value":"` + b64("v") + `"}]}`)
		v = wantCommitted(t, "commit", status, o)
	}
	return v
}

// waitTruncationIntervals gives the truncator (truncate_interval 50ms) many
// chances to run. Nothing is asserted about time: on a slow machine the
// check after it may pass without truncation having run, never fail.
func waitTruncationIntervals() { time.Sleep(time.Second) }

// wantLogFromStart checks that after=0 still streams from version 1.
func wantLogFromStart(t *testing.T, s *server, what string) {
	t.Helper()
	st, status, o := s.subscribeRaw("after=0")
	if st == nil {
		t.Fatalf("%s: subscribe after=0: %d %v (the log was truncated)", what, status, o)
	}
	defer st.close()
	if tx := st.nextTx(); tx.Version != 1 || tx.PrevVersion != 0 {
		t.Fatalf("%s: first event after 0: %+v", what, tx)
	}
	status, o = s.doJSON("GET", "/v1/retention/", "", nil)
	if status != 200 || o.num("oldest_retained_version") != 0 {
		t.Fatalf("%s: retention list %d %v, want oldest_retained_version 0", what, status, o)
	}
}

// TestRetentionFuturePolicy (issue 13.1): a policy above the latest version
// is a 400 future_version and is not stored; and a future policy found in
// the policy file (an older server wrote it) keeps the log whole instead of
// cutting it to its newest segment.
func TestRetentionFuturePolicy(t *testing.T) {
	s := startServer(t, spec{conf: conf{"retention": {`truncate_interval = "50ms"`}}})
	if v := commitN(t, s, 3); v != 3 {
		t.Fatalf("after three commits the log is at %d, want 3", v)
	}
	status, o := s.doJSON("PUT", "/v1/retention/backup", "application/json", []byte(`{"version":100}`))
	wantError(t, "policy at 100 with the log at 3", status, o, 400, "bad_request")
	if o.str("reason") != "future_version" {
		t.Errorf("policy at 100: reason %q, want future_version (%v)", o.str("reason"), o)
	}
	status, o = s.doJSON("GET", "/v1/retention/backup", "", nil)
	wantError(t, "the refused policy", status, o, 404, "not_found")
	commitN(t, s, 2)
	waitTruncationIntervals()
	wantLogFromStart(t, s, "after a refused future policy")

	// Defence in depth: the policy file says 1,000,000.
	s.stop(syscall.SIGKILL)
	policyFile := filepath.Join(s.dataDir, "data", "retention.json")
	if err := os.WriteFile(policyFile, []byte(`{"policies":{"old":1000000}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	commitN(t, s, 5)
	waitTruncationIntervals()
	wantLogFromStart(t, s, "with a future policy in the policy file")
	if !strings.Contains(s.proc.logText(), "retention policy above the durable version") {
		t.Errorf("no warning about the future policy in the log:\n%s", s.proc.tail(20))
	}

	// A policy exactly at the latest version is fine (it truncates).
	v := s.version()
	status, o = s.doJSON("PUT", "/v1/retention/now", "application/json", []byte(`{"version":`+itoa(v)+`}`))
	if status != 200 || o.num("version") != v {
		t.Fatalf("policy at the latest version %d: %d %v", v, status, o)
	}
}

// TestStrictQuery (issue 13.2): unknown, repeated or unparsable query
// parameters are a 400 naming them, on every route.
func TestStrictQuery(t *testing.T) {
	s := startServer(t, spec{})
	id := "strict-query-request-0001"
	for _, c := range []struct{ method, path, name string }{
		{"GET", "/v1/subscribe?aftr=3", "aftr"},
		{"GET", "/v1/subscribe?after=0&after=0", "after"},
		{"GET", "/v1/subscribe?after=x", "after"},
		{"GET", "/v1/subscribe?durable=maybe", "durable"},
		{"GET", "/v1/version?x=1", "x"},
		{"GET", "/v1/status?request_id=" + id + "&foo=1", "foo"},
		{"GET", "/v1/status?request_id=" + id + "&request_id=" + id, "request_id"},
		{"GET", "/v1/status?request_id=" + id + "&min_version=-1", "min_version"},
		{"POST", "/v1/commit?dry_run=1", "dry_run"},
		{"GET", "/v1/retention/?all=1", "all"},
		{"GET", "/v1/retention/p?x", "x"},
		{"PUT", "/v1/retention/p?x=1", "x"},
		{"DELETE", "/v1/retention/p?x=1", "x"},
		{"GET", "/healthz?verbose=1", "verbose"},
		{"GET", "/readyz?verbose=1", "verbose"},
		{"GET", "/metrics?name=x", "name"},
	} {
		var body []byte
		if c.method == "POST" || c.method == "PUT" {
			body = []byte(`{}`)
		}
		status, o := s.doJSON(c.method, c.path, "application/json", body)
		wantError(t, c.method+" "+c.path, status, o, 400, "bad_request")
		if !strings.HasPrefix(o.str("message"), c.name+": ") {
			t.Errorf("%s %s: message %q does not start with %q", c.method, c.path, o.str("message"), c.name+": ")
		}
	}
	if status, o := s.doJSON("POST", "/v1/commit?dry_run=1", "application/json", []byte(`{}`)); status == 200 {
		t.Errorf("a refused commit committed: %v", o)
	}
	if v := s.version(); v != 0 {
		t.Errorf("refused requests changed the log: version %d", v)
	}
	// Defined parameters still work, with a trailing '&'.
	st, status, o := s.subscribeRaw("after=0&durable=true&")
	if st == nil {
		t.Fatalf("subscribe with defined parameters: %d %v", status, o)
	}
	st.close()
	if status, o := s.doJSON("GET", "/v1/status?request_id="+id+"&min_version=0", "", nil); status != 200 || o.str("status") != "not_committed" {
		t.Errorf("status with defined parameters: %d %v", status, o)
	}
}

// TestClaimRequestID (issue 13.3): the empty transaction a restarted
// leader claims the log with is streamed with a generated request id.
func TestClaimRequestID(t *testing.T) {
	s := startServer(t, spec{})
	v := commitN(t, s, 2)
	s.restart()
	st, status, o := s.subscribeRaw("after=" + itoa(v))
	if st == nil {
		t.Fatalf("subscribe: %d %v", status, o)
	}
	claim := st.nextTx()
	if claim.Version != v+1 || len(claim.Operations) != 0 {
		t.Fatalf("first transaction after a restart: %+v, want the claim at %d with no operations", claim, v+1)
	}
	if len(claim.RequestID) != 36 {
		t.Errorf("claim request_id %q, want a generated 36-character UUID", claim.RequestID)
	}
}

// TestVersionRole (issue 13.4): /v1/version and /readyz say the server
// leads.
func TestVersionRole(t *testing.T) {
	s := startServer(t, spec{})
	status, o := s.doJSON("GET", "/v1/version", "", nil)
	if status != 200 || o.str("role") != "leader" || len(o.str("leader_id")) != 32 {
		t.Fatalf("GET /v1/version: %d %v, want role leader and a leader_id", status, o)
	}
	status, o = s.doJSON("GET", "/readyz", "", nil)
	if status != 200 || o.str("role") != "leader" {
		t.Fatalf("GET /readyz: %d %v, want role leader", status, o)
	}
}

// TestRequestsMetric (issue 13.5): one counter of answers by route and
// code, whose series appear with their first answer.
func TestRequestsMetric(t *testing.T) {
	s := startServer(t, spec{})
	series := func() []string {
		var out []string
		for _, line := range strings.Split(s.metricsText(), "\n") {
			if strings.HasPrefix(line, "weaseldb_http_requests_total{") {
				out = append(out, line)
			}
		}
		return out
	}
	first := series()
	for _, l := range first {
		if !strings.Contains(l, `route="metrics"`) && !strings.Contains(l, `route="health"`) {
			t.Errorf("series before any API request: %s", l)
		}
	}
	s.doJSON("GET", "/v1/version", "", nil)
	s.doJSON("GET", "/v1/version?x=1", "", nil)
	s.doJSON("GET", "/v1/retention/none", "", nil)
	if v := metricValue(t, s, `weaseldb_http_requests_total{code="200",route="version"}`); v != 1 {
		t.Errorf("version 200: %v, want 1", v)
	}
	if v := metricValue(t, s, `weaseldb_http_requests_total{code="400",route="version"}`); v != 1 {
		t.Errorf("version 400: %v, want 1", v)
	}
	if v := metricValue(t, s, `weaseldb_http_requests_total{code="404",route="retention"}`); v != 1 {
		t.Errorf("retention 404: %v, want 1", v)
	}
	if n := len(series()); n > 6 {
		t.Errorf("%d series after four kinds of answer, want only those that happened:\n%s", n, strings.Join(series(), "\n"))
	}
}

// TestRetentionRouteErrors (issue 13.11): GET /v1/retention without the
// slash is served; error bodies name the field without Go internals; 413
// states the limit; 415 has the --json hint.
func TestRetentionRouteErrors(t *testing.T) {
	s := startServer(t, spec{})
	status, o := s.doJSON("GET", "/v1/retention", "", nil)
	if status != 200 || o.num("oldest_retained_version") != 0 || o["policies"] == nil {
		t.Fatalf("GET /v1/retention: %d %v", status, o)
	}
	for _, c := range []struct{ body, want string }{
		{``, "body: empty"},
		{`{"version":1,"x":2}`, "x: unknown field"},
		{`{"version":"1"}`, "version: must be"},
		{`{"version":1`, "body: ends before"},
	} {
		status, o := s.doJSON("PUT", "/v1/retention/p", "application/json", []byte(c.body))
		wantError(t, "PUT "+c.body, status, o, 400, "bad_request")
		if msg := o.str("message"); !strings.HasPrefix(msg, c.want) || strings.Contains(msg, "json:") || strings.Contains(msg, "EOF") {
			t.Errorf("PUT %q: message %q, want it to start with %q and hold no Go internals", c.body, msg, c.want)
		}
	}
	big := `{"version":0` + strings.Repeat(" ", 70<<10) + `}`
	status, o = s.doJSON("PUT", "/v1/retention/p", "application/json", []byte(big))
	wantError(t, "PUT of 70 KiB", status, o, 413, "payload_too_large")
	if !strings.Contains(o.str("message"), "65536 bytes") {
		t.Errorf("413 message %q does not state the limit", o.str("message"))
	}
	status, o = s.doJSON("PUT", "/v1/retention/p", "application/x-www-form-urlencoded", []byte(`{"version":0}`))
	wantError(t, "PUT as a form", status, o, 415, "unsupported_media_type")
	if !strings.Contains(o.str("message"), "--json") {
		t.Errorf("415 message %q lacks the curl --json hint", o.str("message"))
	}
}

// TestBuildInfoAndLogFlags (issue 13.12): --version names the revision and
// the Go version, /metrics has weaseldb_build_info, --log-format text and
// --log-level work and bad values exit 2, and the ready line carries a few
// settings as attributes instead of the whole configuration.
func TestBuildInfoAndLogFlags(t *testing.T) {
	out, err := exec.Command(binPath, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`^weaseldb \S+ \(revision [^,()]+(, [^,()]+)?, ` + regexp.QuoteMeta(runtime.Version()) + `\)\n$`)
	if !re.Match(out) {
		t.Errorf("--version printed %q, want %s", out, re)
	}
	for _, args := range [][]string{{"--log-level", "loud"}, {"--log-format", "yaml"}} {
		out, err := exec.Command(binPath, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), args[0]) {
			t.Errorf("%v: %v %q, want exit 2 and one line naming %s", args, err, out, args[0])
		}
	}

	s := startServer(t, spec{})
	var ready map[string]any
	for _, line := range strings.Split(s.proc.logText(), "\n") {
		if strings.Contains(line, `"weaseldb ready"`) {
			if err := json.Unmarshal([]byte(line), &ready); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, ok := ready["config"]; ok {
		t.Errorf("the ready line embeds the whole configuration: %v", ready)
	}
	for _, k := range []string{"listen", "version", "revision", "role", "backend", "data_dir", "auth", "recovered_version"} {
		if _, ok := ready[k]; !ok {
			t.Errorf("the ready line lacks %q: %v", k, ready)
		}
	}
	if !regexp.MustCompile(`(?m)^weaseldb_build_info\{goversion="` + regexp.QuoteMeta(runtime.Version()) + `",revision="[^"]+",version="[^"]+"\} 1$`).MatchString(s.metricsText()) {
		t.Errorf("no weaseldb_build_info sample in /metrics")
	}

	// Text logs at debug level.
	p, err := launch(binPath, "--config", s.cfgPath, "--data-dir", t.TempDir(), "--log-format", "text", "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(syscall.SIGKILL)
	eventually(t, "a text ready line", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("exited: %s", p.tail(10))
		default:
		}
		return strings.Contains(p.logText(), `msg="weaseldb ready"`)
	})
	if strings.Contains(p.logText(), `{"time"`) {
		t.Errorf("JSON lines with --log-format text:\n%s", p.tail(10))
	}
}

// TestS3MissingBucket (issue 13.10): a bucket that does not exist fails the
// start at once (no retry loop) naming the bucket and the endpoint; every
// line the server writes is structured JSON (the SDK logs through slog);
// and a bucket name S3 refuses fails config validation with exit 2.
func TestS3MissingBucket(t *testing.T) {
	dir := t.TempDir()
	fake, err := startFakeS3(filepath.Join(dir, "s3"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.stop(syscall.SIGTERM)
	endpoint := "http://" + fake.addr
	cfgFile := filepath.Join(dir, "w.toml")
	write := func(bucket string) {
		text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\npin_threads = false\n\n[persist]\nbackend = \"s3\"\nbucket = %q\nendpoint = %q\nuse_path_style = true\naccess_key_id = \"e2e\"\nsecret_access_key = \"e2e-secret\"\n", bucket, endpoint)
		if err := os.WriteFile(cfgFile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func() (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, binPath, "--config", cfgFile).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("weaseldb with a bad bucket: %v, want a failing exit\n%s", err, out)
		}
		return ee.ExitCode(), string(out)
	}

	write("missing-bucket")
	code, out := run()
	if code == 0 || !strings.Contains(out, `missing-bucket`) || !strings.Contains(out, endpoint) || !strings.Contains(out, "does not exist") {
		t.Errorf("missing bucket: exit %d, want a failure naming the bucket and %s:\n%s", code, endpoint, out)
	}
	if strings.Contains(out, "retrying") {
		t.Errorf("a missing bucket was retried:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a line that is not a JSON log record: %q", line)
		}
	}

	write("Weasel_DB")
	code, out = run()
	if code != 2 || !strings.Contains(out, "persist.bucket") {
		t.Errorf("bucket name S3 refuses: exit %d, want 2 naming persist.bucket:\n%s", code, out)
	}
}

// TestObservabilityMetrics (issue 13.13): the log position is
// weaseldb_log_version; subscriber lag is a histogram in versions and in
// seconds; a subscriber dropped for not reading and truncation runs are
// counted.
func TestObservabilityMetrics(t *testing.T) {
	value := strings.Repeat("v", 120<<10)
	body := `{"operations":[{"type":"write","key":"` + b64("k") + `","value":"` + b64(value) + `"}]}`

	// Lag: a subscriber that never reads (the default 30s stall timeout
	// keeps it connected) falls behind once the socket buffers are full.
	s := startServer(t, spec{conf: conf{"subscribe": {`buffer_bytes = 65536`}}})
	text := s.metricsText()
	if strings.Contains(text, "\nweaseldb_version{") {
		t.Errorf("the old weaseldb_version family is still exported")
	}
	if !strings.Contains(text, `weaseldb_log_version{kind="durable"} 0`) {
		t.Errorf("no weaseldb_log_version{kind=\"durable\"}")
	}
	stalled := func(s *server) net.Conn {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := conn.Write([]byte("GET /v1/subscribe?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the stalled subscriber is registered", func() bool {
			return metricValue(t, s, "weaseldb_subscribers") == 1
		})
		return conn
	}
	stalled(s)
	// Lag in seconds is measured against when the subscriber last held
	// everything, which can be the very instant of a scrape; keep
	// committing until one scrape shows it too.
	lagged, laggedSeconds := false, false
	for i := 0; i < 300 && !(lagged && laggedSeconds); i++ { // at most ~36 MB, far beyond socket buffers
		status, o := s.commitRaw(body)
		wantCommitted(t, "big commit", status, o)
		// More than one version behind: a subscriber that reads is at most
		// one behind for the moment it takes to send the latest commit.
		lagged = lagged || metricValue(t, s, "weaseldb_subscriber_lag_versions_max") > 1
		laggedSeconds = laggedSeconds || metricValue(t, s, "weaseldb_subscriber_lag_seconds_max") > 0
	}
	if !lagged {
		t.Fatalf("a subscriber that reads nothing never lagged:\n%s", s.metricsText())
	}
	if v := metricValue(t, s, "weaseldb_subscriber_lag_versions_count"); v != 1 {
		t.Errorf("lag histogram count %v, want 1 (one subscriber)", v)
	}
	if v := metricValue(t, s, "weaseldb_subscriber_lag_seconds_count"); v != 1 {
		t.Errorf("lag seconds histogram count %v, want 1", v)
	}
	if !laggedSeconds {
		t.Errorf("lag seconds max never > 0 with a lagging subscriber")
	}

	// Dropped: the same with a short stall timeout.
	s = startServer(t, spec{conf: conf{
		"server":    {`write_stall_timeout = "500ms"`},
		"subscribe": {`buffer_bytes = 65536`},
		"retention": {`truncate_interval = "50ms"`},
	}})
	stalled(s)
	for i := 0; i < 300 && metricValue(t, s, "weaseldb_subscribers_dropped_total") == 0; i++ {
		status, o := s.commitRaw(body)
		wantCommitted(t, "big commit", status, o)
	}
	eventually(t, "the stalled subscriber is dropped and counted", func() bool {
		return metricValue(t, s, "weaseldb_subscribers_dropped_total") == 1 && metricValue(t, s, "weaseldb_subscribers") == 0
	})

	// Truncation is counted.
	v := s.version()
	if status, o := s.doJSON("PUT", "/v1/retention/p", "application/json", []byte(`{"version":`+itoa(v-1)+`}`)); status != 200 {
		t.Fatalf("PUT policy: %d %v", status, o)
	}
	eventually(t, "a truncation is counted", func() bool {
		return metricValue(t, s, "weaseldb_retention_truncations_total") >= 1
	})
	text = s.metricsText() // one scrape: a later run may move both
	oldest, got := sampleIn(t, text, "weaseldb_retention_oldest_retained_version"), sampleIn(t, text, "weaseldb_retention_truncated_versions_total")
	if got != oldest || oldest == 0 {
		t.Errorf("truncated versions %v, want the oldest retained version %v", got, oldest)
	}
}

// sampleIn returns the value of one sample line in a scrape, 0 if absent.
func sampleIn(t *testing.T, text, sample string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", sample, err)
	}
	return v
}

// TestFakeS3CLI (issue 13.14): `weaseldb fakes3` follows the main
// binary's conventions.
func TestFakeS3CLI(t *testing.T) {
	out, err := exec.Command(binPath, "fakes3", "--help").Output()
	if err != nil || !strings.Contains(string(out), "SYNOPSIS") || !strings.Contains(string(out), "--listen ADDR") {
		t.Errorf("fakes3 --help: %v\n%s", err, out)
	}
	out, err = exec.Command(binPath, "fakes3", "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "weaseldb fakes3 ") || !strings.Contains(string(out), "revision") {
		t.Errorf("fakes3 --version: %v %q", err, out)
	}
	cmd := exec.Command(binPath, "fakes3", "-bogus")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("fakes3 -bogus: %v, stderr %q; want exit 2 and one line", err, stderr.String())
	}
}
