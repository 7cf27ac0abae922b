package workload

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func shortLoad() Load {
	l := DefaultLoad()
	l.Connections, l.Duration, l.Warmup, l.Progress = 4, 700*time.Millisecond, 200*time.Millisecond, false
	return l
}

func smallShape() Shape {
	s := DefaultShape()
	s.Keys, s.KeyBytes = 10_000, 8
	return s
}

// checkSane asserts what must hold of every run against a correct server.
func checkSane(t *testing.T, res *Result, f *fakeServer) {
	t.Helper()
	commits, rejected := f.counts()
	if rejected != 0 {
		t.Fatalf("server rejected %d requests as malformed", rejected)
	}
	if res.Outcomes.OK == 0 || res.Outcomes.Errors() != 0 {
		t.Fatalf("outcomes %+v: want commits and no errors", res.Outcomes)
	}
	if res.Op == "commit" && res.Outcomes.OK > commits {
		t.Fatalf("counted %d commits, server made only %d", res.Outcomes.OK, commits)
	}
	answered := res.Outcomes.OK + res.Outcomes.Conflict + res.Outcomes.TooOld
	if res.Latency.Count != answered {
		t.Fatalf("latency samples %d, answers %d", res.Latency.Count, answered)
	}
	if !(res.Latency.P50Ms > 0 && res.Latency.P50Ms <= res.Latency.P99Ms && res.Latency.P99Ms <= res.Latency.MaxMs) {
		t.Fatalf("latency quantiles out of order: %+v", res.Latency)
	}
}

func TestClosedLoopAgainstFakeServer(t *testing.T) {
	for _, pipeline := range []int{1, 8} {
		f, addr := newFakeServer(t)
		load := shortLoad()
		load.Pipeline = pipeline
		var progress bytes.Buffer
		load.Progress = true
		res, err := Run(context.Background(), addr, smallShape(), load, &progress)
		if err != nil {
			t.Fatal(err)
		}
		checkSane(t, res, f)
		if res.Mode != "closed" || res.Throughput <= 0 {
			t.Fatalf("mode %s throughput %v", res.Mode, res.Throughput)
		}
	}
}

func TestHotKeysMakeConflicts(t *testing.T) {
	f, addr := newFakeServer(t)
	shape := smallShape()
	shape.HotFraction, shape.HotKeys = 1, 1
	load := shortLoad()
	load.Pipeline = 4 // requests in flight read stale versions: conflicts for sure
	res, err := Run(context.Background(), addr, shape, load, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res, f)
	if res.Outcomes.Conflict == 0 {
		t.Fatalf("no conflicts with every commit a read-modify-write of one key: %+v", res.Outcomes)
	}
}

func TestOpenLoopAgainstFakeServer(t *testing.T) {
	f, addr := newFakeServer(t)
	load := shortLoad()
	load.Rate, load.Pipeline = 400, 16
	res, err := Run(context.Background(), addr, smallShape(), load, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res, f)
	if res.Mode != "open" {
		t.Fatalf("mode %s", res.Mode)
	}
}

func TestVersionOpAndAdminLoad(t *testing.T) {
	f, addr := newFakeServer(t)
	load := shortLoad()
	load.Op, load.AdminRate = "version", 50
	res, err := Run(context.Background(), addr, smallShape(), load, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res, f)
	if c, _ := f.counts(); c != 0 {
		t.Fatalf("version load made %d commits", c)
	}
	if res.Admin == nil || res.Admin.Outcomes.OK == 0 || res.Admin.Outcomes.Errors() != 0 {
		t.Fatalf("admin load: %+v", res.Admin)
	}
}

func TestSubscribersMeasureLagWithoutGaps(t *testing.T) {
	for _, durable := range []bool{true, false} {
		f, addr := newFakeServer(t)
		load := shortLoad()
		load.Subscribers, load.SubDurable = 3, durable
		res, err := Run(context.Background(), addr, smallShape(), load, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkSane(t, res, f)
		s := res.Subscribers
		if s == nil || s.Events == 0 || s.Gaps != 0 || s.Lag.Count == 0 || s.Lag.P99Ms <= 0 {
			t.Fatalf("subscribers: %+v", s)
		}
	}
}

func TestRunFailsFastWithoutServer(t *testing.T) {
	_, err := Run(context.Background(), "127.0.0.1:1", smallShape(), shortLoad(), nil)
	if err == nil {
		t.Fatal("run against a closed port succeeded")
	}
}
