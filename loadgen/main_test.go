package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// server answers every commit with the next version and exposes one
// commit counter and one persist histogram on /metrics.
func server(t *testing.T) string {
	var version atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"request_id":"x","status":"committed","version":%d,"leader_id":"l"}`, version.Add(1))
	})
	mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"version":%d,"leader_id":"l"}`, version.Load())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		v := version.Load()
		fmt.Fprintf(w, "# TYPE weaseldb_commits_total counter\nweaseldb_commits_total %d\n", v)
		fmt.Fprintf(w, "weaseldb_persist_seconds_bucket{le=\"0.001\"} %d\nweaseldb_persist_seconds_bucket{le=\"+Inf\"} %d\n", v, v)
		fmt.Fprintf(w, "weaseldb_persist_seconds_sum %g\nweaseldb_persist_seconds_count %d\ngo_threads 5\n", float64(v)*0.0005, v)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestJSONSummaryWithServerMetrics(t *testing.T) {
	addr := server(t)
	var out, errOut bytes.Buffer
	code := run([]string{"--addr", addr, "--connections", "2", "--duration", "400ms", "--warmup", "0s",
		"--compare-version", "--json", "--quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if s.Run == nil || s.Run.Outcomes.OK == 0 || s.Version == nil || s.VersionRatio <= 0 {
		t.Fatalf("summary lacks the run or the version baseline: %+v", s)
	}
	if s.Server == nil || s.Server.Series["weaseldb_commits_total"].Delta < float64(s.Run.Outcomes.OK) {
		t.Fatalf("server series: %+v (run ok %d)", s.Server, s.Run.Outcomes.OK)
	}
	if _, ok := s.Server.Series["go_threads"]; ok {
		t.Fatal("unfiltered series reported")
	}
	if h := s.Server.Histograms["weaseldb_persist_seconds"]; h.Count == 0 {
		t.Fatalf("persist histogram: %+v", s.Server.Histograms)
	}
	if !strings.Contains(errOut.String(), "latency ms") {
		t.Fatalf("no table on stderr: %s", errOut.String())
	}
}

func TestTargetsMissExitsOneNamingTheFigure(t *testing.T) {
	addr := server(t)
	path := filepath.Join(t.TempDir(), "targets.toml")
	os.WriteFile(path, []byte(`[scenario.impossible]
description = "a floor no server reaches"
args = ["--connections", "2", "--duration", "300ms", "--warmup", "0s", "--quiet"]
min_ok_per_sec = 1e12
[scenario.impossible.max_metric_rate]
"weaseldb_commits_total" = 1e15
`), 0o644)
	var out, errOut bytes.Buffer
	code := run([]string{"--targets", path, "--scenario", "impossible", "--addr", addr}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "missed ok_per_sec") {
		t.Fatalf("exit %d, stderr %q: want 1 naming ok_per_sec", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "missed rate(") {
		t.Fatalf("met metric rate reported as missed: %s", errOut.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "EXAMPLES") {
		t.Fatalf("--help: exit %d", code)
	}
	// Every flag is documented in the manual.
	var o options
	fs := newFlagSet(&o)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "--"+f.Name) {
			t.Errorf("flag --%s missing from --help", f.Name)
		}
	})
	if code := run([]string{"--connections", "0"}, &out, &errOut); code != 2 {
		t.Fatalf("bad flag value: exit %d, want 2", code)
	}
}
