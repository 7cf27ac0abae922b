package promtext

import (
	"math"
	"testing"
)

const before = `# HELP weaseldb_commits_total Commits by outcome.
# TYPE weaseldb_commits_total counter
weaseldb_commits_total{outcome="committed"} 10
weaseldb_commits_total{outcome="conflict"} 2
weaseldb_persist_seconds_bucket{backend="disk",le="0.001"} 0
weaseldb_persist_seconds_bucket{backend="disk",le="0.01"} 0
weaseldb_persist_seconds_bucket{backend="disk",le="+Inf"} 0
weaseldb_persist_seconds_sum{backend="disk"} 0
weaseldb_persist_seconds_count{backend="disk"} 0
go_goroutines 12
`

const after = `weaseldb_commits_total{outcome="committed"} 110 1700000000000
weaseldb_commits_total{outcome="conflict"} 7
weaseldb_persist_seconds_bucket{backend="disk",le="0.001"} 50
weaseldb_persist_seconds_bucket{backend="disk",le="0.01"} 100
weaseldb_persist_seconds_bucket{backend="disk",le="+Inf"} 100
weaseldb_persist_seconds_sum{backend="disk"} 0.2
weaseldb_persist_seconds_count{backend="disk"} 100
weaseldb_label_with_space{path="a b, c"} 3
go_goroutines 40
`

func TestCompareReportsDeltasAndHistograms(t *testing.T) {
	b, err := Parse([]byte(before))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse([]byte(after))
	if err != nil {
		t.Fatal(err)
	}
	if a[`weaseldb_label_with_space{path="a b, c"}`] != 3 {
		t.Fatalf("label with a space not parsed: %v", a)
	}
	r := Compare(b, a, "commit", "persist")
	if got := r.Series[`weaseldb_commits_total{outcome="committed"}`]; got.Delta != 100 || got.Before != 10 {
		t.Fatalf("committed series %+v, want delta 100", got)
	}
	if _, ok := r.Series["go_goroutines"]; ok {
		t.Fatal("unrelated series kept")
	}
	h, ok := r.Histograms[`weaseldb_persist_seconds{backend="disk"}`]
	if !ok {
		t.Fatalf("histogram missing: %v", r.Histograms)
	}
	if h.Count != 100 || math.Abs(h.Mean-0.002) > 1e-12 || math.Abs(h.P50-0.001) > 1e-12 {
		t.Fatalf("histogram %+v: want count 100, mean 0.002, p50 0.001", h)
	}
	if want := 0.001 + 0.009*(99.0-50)/50; math.Abs(h.P99-want) > 1e-12 {
		t.Fatalf("p99 %v, want %v", h.P99, want)
	}
}

func TestParseNamesTheBadLine(t *testing.T) {
	for _, text := range []string{"metric\n", "a 1\nb notanumber\n", "c{x=\"1\"} 1 2 3\n"} {
		if _, err := Parse([]byte(text)); err == nil {
			t.Fatalf("Parse(%q) succeeded", text)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(before))
	f.Add([]byte(after))
	f.Add([]byte("x{le=\"+Inf\"} 1\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		s, err := Parse(text)
		if err != nil {
			return
		}
		Compare(s, s, "") // must not panic on anything Parse accepts
	})
}
