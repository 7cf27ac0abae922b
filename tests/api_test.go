package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/weaseldb/weaseldb/client"
)

// writeBody is a commit body writing key=value with the given request id
// (empty: none).
func writeBody(requestID, key, value string) string {
	rid := ""
	if requestID != "" {
		rid = fmt.Sprintf(`"request_id":%q,`, requestID)
	}
	return fmt.Sprintf(`{%s"operations":[{"type":"write","key":%q,"value":%q}]}`, rid, b64(key), b64(value))
}

// wantCommitted checks a 200 commit answer and returns its version.
func wantCommitted(t *testing.T, what string, status int, o obj) uint64 {
	t.Helper()
	if status != 200 || o.str("status") != "committed" || o.num("version") == 0 || o.str("leader_id") == "" || len(o.str("request_id")) < 20 {
		t.Fatalf("%s: got %d %v, want 200 committed with version, leader_id and request_id", what, status, o)
	}
	return o.num("version")
}

// TestCommitAndVersion covers /v1/version and every 200/409 answer of
// /v1/commit, on one server so that versions are predictable.
func TestCommitAndVersion(t *testing.T) {
	s := startServer(t, spec{})
	status, o := s.doJSON("GET", "/v1/version", "", nil)
	if status != 200 || o.num("version") != 0 || o.str("leader_id") == "" {
		t.Fatalf("fresh server: GET /v1/version = %d %v, want version 0 and a leader_id", status, o)
	}
	leader := o.str("leader_id")

	rid := client.NewRequestID()
	status, o = s.commitRaw(writeBody(rid, "k1", "v1"))
	if v := wantCommitted(t, "first commit", status, o); v != 1 {
		t.Fatalf("first commit of an empty log got version %d, want 1", v)
	}
	if o.str("request_id") != rid || o.str("leader_id") != leader {
		t.Errorf("answer %v: want request_id %s and leader_id %s echoed", o, rid, leader)
	}
	if v := s.version(); v != 1 {
		t.Errorf("version after one commit = %d, want 1", v)
	}

	t.Run("generated request_id", func(t *testing.T) {
		status, o := s.commitRaw(writeBody("", "k2", "v2"))
		if v := wantCommitted(t, "commit without request_id", status, o); v != 2 {
			t.Errorf("version %d, want 2", v)
		}
	})

	t.Run("duplicate", func(t *testing.T) {
		before := s.version()
		// A different body with the same id: the earlier result, nothing new.
		status, o := s.commitRaw(writeBody(rid, "other", "body"))
		if status != 200 || o["duplicate"] != true || o.num("version") != 1 || o.str("request_id") != rid {
			t.Fatalf("duplicate: got %d %v, want 200 duplicate version 1", status, o)
		}
		if v := s.version(); v != before {
			t.Errorf("a duplicate moved the version from %d to %d", before, v)
		}
	})

	t.Run("conflict", func(t *testing.T) {
		latest := s.version()
		body := fmt.Sprintf(`{"read_version":%d,"preconditions":[
			{"type":"point_read","key":%q},
			{"type":"point_read","key":%q,"version":0},
			{"type":"range_read","begin":%q,"end":%q,"version":0},
			{"type":"range_read","begin":%q,"end":%q,"version":0}],
			"operations":[{"type":"write","key":%q,"value":""}]}`,
			latest, b64("never"), b64("k1"), b64("k0"), b64("k2"), b64("x"), b64("y"), b64("k1"))
		status, o := s.commitRaw(body)
		if status != 409 || o.str("status") != "not_committed" || o.str("reason") != "conflict" ||
			o.num("version") != latest || o.str("leader_id") != leader || len(o.str("request_id")) < 20 {
			t.Fatalf("conflict: got %d %v, want 409 not_committed conflict version %d", status, o, latest)
		}
		if fmt.Sprint(o["conflicts"]) != "[1 2]" {
			t.Errorf("conflicts = %v, want [1 2] (0-based indexes of the failed preconditions)", o["conflicts"])
		}
		if o.str("error") != "conflict" || o.str("message") == "" {
			t.Errorf("a 409 commit answer must also carry error and message: %v", o)
		}
		if v := s.version(); v != latest {
			t.Errorf("a conflict moved the version from %d to %d", latest, v)
		}
		// The same reads at the latest version hold.
		body = fmt.Sprintf(`{"read_version":%d,"preconditions":[{"type":"point_read","key":%q},{"type":"range_read","begin":%q,"end":%q}],
			"operations":[{"type":"write","key":%q,"value":%q}]}`, latest, b64("k1"), b64("k0"), b64("k2"), b64("k1"), b64("v1b"))
		status, o = s.commitRaw(body)
		wantCommitted(t, "reads at the latest version", status, o)
	})

	t.Run("leader_changed", func(t *testing.T) {
		status, o := s.commitRaw(`{"leader_id":"somebody-else","operations":[]}`)
		if status != 409 || o.str("reason") != "leader_changed" || o.str("status") != "not_committed" || o.str("leader_id") != leader || o.num("version") == 0 {
			t.Fatalf("wrong leader_id: got %d %v, want 409 leader_changed with the current leader_id", status, o)
		}
		status, o = s.commitRaw(fmt.Sprintf(`{"leader_id":%q}`, leader))
		wantCommitted(t, "the right leader_id", status, o)
	})

	t.Run("barrier", func(t *testing.T) {
		before := s.version()
		status, o := s.commitRaw(`{}`)
		if v := wantCommitted(t, "empty transaction", status, o); v != before+1 {
			t.Errorf("barrier got version %d, want %d", v, before+1)
		}
	})

	t.Run("content type", func(t *testing.T) {
		before := s.version()
		status, o := s.doJSON("POST", "/v1/commit", "text/plain", []byte(`{}`))
		wantError(t, "text/plain commit", status, o, 415, "unsupported_media_type")
		status, o = s.doJSON("POST", "/v1/commit", "application/x-www-form-urlencoded", []byte(`{}`))
		wantError(t, "form commit (curl -d)", status, o, 415, "unsupported_media_type")
		if v := s.version(); v != before {
			t.Errorf("refused commits moved the version from %d to %d", before, v)
		}
		status, o = s.doJSON("POST", "/v1/commit", "application/json; charset=utf-8", []byte(`{}`))
		wantCommitted(t, "application/json with charset", status, o)
		status, o = s.doJSON("POST", "/v1/commit", "", []byte(`{}`))
		wantCommitted(t, "no Content-Type", status, o)
	})

	t.Run("status", func(t *testing.T) {
		status, o := s.doJSON("GET", "/v1/status?request_id="+rid, "", nil)
		if status != 200 || o.str("status") != "committed" || o.num("version") != 1 || o.str("request_id") != rid {
			t.Errorf("status of a committed id: %d %v, want committed version 1", status, o)
		}
		status, o = s.doJSON("GET", "/v1/status?request_id="+rid+"&min_version=1", "", nil)
		if status != 200 || o.str("status") != "not_committed" {
			t.Errorf("status with min_version = its version (exclusive): %d %v, want not_committed", status, o)
		}
		status, o = s.doJSON("GET", "/v1/status?request_id="+rid+"&min_version=0", "", nil)
		if status != 200 || o.str("status") != "committed" {
			t.Errorf("status with min_version=0: %d %v, want committed", status, o)
		}
		unknown := client.NewRequestID()
		status, o = s.doJSON("GET", "/v1/status?request_id="+unknown, "", nil)
		if status != 200 || o.str("status") != "not_committed" || o.str("request_id") != unknown {
			t.Errorf("status of an unknown id: %d %v, want not_committed", status, o)
		}
		for _, q := range []string{"", "request_id=", "request_id=short", "request_id=" + strings.Repeat("x", 257), "request_id=" + rid + "&min_version=x", "request_id=" + rid + "&min_version=-1"} {
			status, o := s.doJSON("GET", "/v1/status?"+q, "", nil)
			wantError(t, "status ?"+q, status, o, 400, "bad_request")
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		before := s.version()
		k := b64("k")
		cases := []struct{ name, body string }{
			{"malformed JSON", `{"operations":[`},
			{"not an object", `[1,2]`},
			{"empty body", ``},
			{"trailing data", `{} {}`},
			{"bad base64 key", `{"operations":[{"type":"write","key":"!!!!","value":""}]}`},
			{"bad base64 value", `{"operations":[{"type":"write","key":"` + k + `","value":"a"}]}`},
			{"read_version string", `{"read_version":"5"}`},
			{"read_version negative", `{"read_version":-1}`},
			{"operations not array", `{"operations":"x"}`},
			{"request_id number", `{"request_id":12345678901234567890123}`},
			{"unknown field", `{"operatoins":[]}`},
			{"unknown op field", `{"operations":[{"type":"write","key":"` + k + `","value":"","extra":1}]}`},
			{"unknown op type", `{"operations":[{"type":"frob","key":"` + k + `"}]}`},
			{"write without key", `{"operations":[{"type":"write","value":""}]}`},
			{"range_read begin >= end", `{"read_version":1,"preconditions":[{"type":"range_read","begin":"` + b64("b") + `","end":"` + b64("a") + `"}]}`},
			{"range_delete begin == end", `{"operations":[{"type":"range_delete","begin":"` + k + `","end":"` + k + `"}]}`},
			{"precondition without version", `{"preconditions":[{"type":"point_read","key":"` + k + `"}]}`},
			{"request_id too short", `{"request_id":"0123456789012345678"}`},
			{"request_id too long", `{"request_id":"` + strings.Repeat("r", 257) + `"}`},
		}
		for _, c := range cases {
			status, o := s.commitRaw(c.body)
			wantError(t, c.name, status, o, 400, "bad_request")
		}
		// Limits of request_id are inclusive.
		status, o := s.commitRaw(`{"request_id":"` + strings.Repeat("a", 20) + `"}`)
		wantCommitted(t, "request_id of 20 bytes", status, o)
		status, o = s.commitRaw(`{"request_id":"` + strings.Repeat("b", 256) + `"}`)
		wantCommitted(t, "request_id of 256 bytes", status, o)
		before += 2

		// future_version: nobody can have read a version not yet assigned.
		status, o = s.commitRaw(fmt.Sprintf(`{"read_version":%d,"preconditions":[{"type":"point_read","key":%q}]}`, before+1000, k))
		wantError(t, "future read_version", status, o, 400, "bad_request")
		if o.str("reason") != "future_version" {
			t.Errorf("future read_version: reason %q, want future_version (%v)", o.str("reason"), o)
		}
		status, o = s.commitRaw(fmt.Sprintf(`{"preconditions":[{"type":"point_read","key":%q,"version":%d}]}`, k, before+1000))
		if status != 400 || o.str("reason") != "future_version" {
			t.Errorf("future precondition version: %d %v, want 400 future_version", status, o)
		}
		if v := s.version(); v != before {
			t.Errorf("bad requests moved the version from %d to %d", before, v)
		}
	})

	t.Run("routes", func(t *testing.T) {
		status, o := s.doJSON("GET", "/v1/nope", "", nil)
		wantError(t, "GET /v1/nope", status, o, 404, "not_found")
		status, o = s.doJSON("GET", "/", "", nil)
		wantError(t, "GET /", status, o, 404, "not_found")
		status, o = s.doJSON("DELETE", "/v1/version", "", nil)
		wantError(t, "DELETE /v1/version", status, o, 405, "method_not_allowed")
		status, o = s.doJSON("GET", "/v1/commit", "", nil)
		wantError(t, "GET /v1/commit", status, o, 405, "method_not_allowed")
		status, o = s.doJSON("POST", "/v1/retention/", "application/json", []byte(`{}`))
		wantError(t, "POST /v1/retention/", status, o, 405, "method_not_allowed")
		status, o = s.doJSON("GET", "/healthz", "", nil)
		if status != 200 {
			t.Errorf("GET /healthz: %d %v", status, o)
		}
		status, o = s.doJSON("GET", "/readyz", "", nil)
		if status != 200 || o.str("leader_id") != leader {
			t.Errorf("GET /readyz: %d %v", status, o)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		before := metricValue(t, s, `weaseldb_commits_total{outcome="committed"}`)
		for i := range 3 {
			status, o := s.commitRaw(writeBody("", fmt.Sprint("m", i), "x"))
			wantCommitted(t, "commit", status, o)
		}
		after := metricValue(t, s, `weaseldb_commits_total{outcome="committed"}`)
		if after < before+3 {
			t.Errorf("weaseldb_commits_total{outcome=committed} went from %v to %v over 3 commits", before, after)
		}
		if metricValue(t, s, `weaseldb_commits_total{outcome="conflict"}`) < 1 {
			t.Errorf("the conflict above is not counted")
		}
		text := s.metricsText()
		for _, name := range []string{"weaseldb_commit_latency_seconds_bucket", "weaseldb_persist_latency_seconds", "weaseldb_http_connections",
			"weaseldb_subscribers", "weaseldb_retention_oldest_retained_version", "weaseldb_conflict_set_keys", "go_goroutines", "process_resident_memory_bytes"} {
			if !strings.Contains(text, name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		status, h, _ := s.do("GET", "/metrics", "", nil, "Accept", "application/openmetrics-text; version=1.0.0")
		if status != 200 || !strings.Contains(h.Get("Content-Type"), "openmetrics") {
			t.Errorf("OpenMetrics asked for: %d %q", status, h.Get("Content-Type"))
		}
	})
}

func (s *server) metricsText() string {
	s.t.Helper()
	status, h, b := s.do("GET", "/metrics", "", nil)
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		s.t.Fatalf("GET /metrics: %d %q", status, h.Get("Content-Type"))
	}
	return string(b)
}

// metricValue returns the value of one sample line (name with labels as
// printed), 0 when absent.
func metricValue(t *testing.T, s *server, sample string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(s.metricsText())
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", sample, err)
	}
	return v
}

// TestLimits: 413 for every configured limit, and nothing changes.
func TestLimits(t *testing.T) {
	s := startServer(t, spec{conf: conf{"server": {
		"max_key_bytes = 16", "max_value_bytes = 32", "max_body_bytes = 1024", "max_preconditions = 2", "max_operations = 3",
	}}})
	key16, val32 := strings.Repeat("k", 16), strings.Repeat("v", 32)
	status, o := s.commitRaw(writeBody("", key16, val32))
	wantCommitted(t, "key and value at the limits", status, o)
	ops := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"delete","key":%q}`, b64(fmt.Sprint(i)))
		}
		return b.String()
	}
	pres := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"point_read","key":%q}`, b64(fmt.Sprint(i)))
		}
		return b.String()
	}
	status, o = s.commitRaw(`{"read_version":1,"preconditions":[` + pres(2) + `],"operations":[` + ops(3) + `]}`)
	wantCommitted(t, "counts at the limits", status, o)

	cases := []struct{ name, body string }{
		{"key", writeBody("", key16+"k", "")},
		{"value", writeBody("", "k", val32+"v")},
		{"precondition key", `{"read_version":1,"preconditions":[{"type":"point_read","key":"` + b64(key16+"k") + `"}]}`},
		{"range_delete end", `{"operations":[{"type":"range_delete","begin":"` + b64("a") + `","end":"` + b64(key16+"z") + `"}]}`},
		{"preconditions", `{"read_version":1,"preconditions":[` + pres(3) + `]}`},
		{"operations", `{"operations":[` + ops(4) + `]}`},
		{"body", `{"operations":[]` + strings.Repeat(" ", 1100) + `}`},
	}
	for _, c := range cases {
		status, o := s.commitRaw(c.body)
		wantError(t, c.name+" over the limit", status, o, 413, "payload_too_large")
	}
	// The connection pool keeps working and nothing was committed.
	if v := s.version(); v != 2 {
		t.Errorf("version %d after refused commits, want 2", v)
	}
}

// TestTooOld: with a tiny conflict window, a precondition older than the
// window is answered too_old.
func TestTooOld(t *testing.T) {
	s := startServer(t, spec{conf: conf{"commit": {`conflict_window = "1ms"`, "conflict_window_versions = 1"}}})
	status, o := s.commitRaw(writeBody("", "k", "v"))
	first := wantCommitted(t, "commit", status, o)
	var last obj
	eventually(t, "a precondition at version 1 becomes too_old", func() bool {
		status, o := s.commitRaw(writeBody("", "other", "x"))
		wantCommitted(t, "blind write", status, o)
		status, last = s.commitRaw(fmt.Sprintf(`{"preconditions":[{"type":"point_read","key":%q,"version":%d}],"operations":[{"type":"write","key":%q,"value":""}]}`,
			b64("k"), first, b64("third")))
		switch {
		case status == 409 && last.str("reason") == "too_old":
			return true
		case status == 200:
			return false
		}
		t.Fatalf("precondition at version %d: %d %v, want 200 or 409 too_old", first, status, last)
		return false
	})
	if last.str("status") != "not_committed" || last.num("version") == 0 || last.str("leader_id") == "" {
		t.Errorf("too_old answer %v lacks status, version or leader_id", last)
	}
}

// TestStatusGone: min_version below a tiny status window is 410.
func TestStatusGone(t *testing.T) {
	s := startServer(t, spec{conf: conf{"commit": {`status_window = "1ms"`, "status_window_versions = 1"}}})
	rid := client.NewRequestID()
	status, o := s.commitRaw(writeBody(rid, "k", "v"))
	wantCommitted(t, "commit", status, o)
	eventually(t, "status below the window answers 410", func() bool {
		status, o := s.commitRaw(writeBody("", "k", "v"))
		wantCommitted(t, "commit", status, o)
		status, o = s.doJSON("GET", "/v1/status?request_id="+rid+"&min_version=1", "", nil)
		if status == 410 {
			wantError(t, "status below the window", status, o, 410, "gone")
			return true
		}
		if status != 200 {
			t.Fatalf("status: %d %v, want 200 or 410", status, o)
		}
		return false
	})
}
