package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"

	"github.com/weaseldb/weaseldb/loadgen/workload"
)

func printTable(w io.Writer, s *Summary) {
	r := s.Run
	fmt.Fprintf(w, "\n%s loop, op %s, %d connections x %d in flight", r.Mode, r.Op, r.Connections, r.Pipeline)
	if r.Mode == "open" {
		fmt.Fprintf(w, ", target %.0f/s", r.RatePerSec)
	}
	fmt.Fprintf(w, ", %.1fs measured, server %s\n", r.Seconds, s.Addr)
	fmt.Fprintf(w, "  %-22s %12.0f /s\n", "ok (200)", r.Throughput)
	if r.CommitGapMs > 0 {
		fmt.Fprintf(w, "  %-22s %12.0f ms   longest time without a 200 (failover)\n", "commit gap", r.CommitGapMs)
	}
	o := r.Outcomes
	for _, row := range []struct {
		name string
		n    uint64
	}{{"ok", o.OK}, {"duplicate", o.Duplicate}, {"conflict", o.Conflict}, {"too_old", o.TooOld},
		{"leader_changed", o.LeaderChanged}, {"other 4xx", o.Status4xx}, {"503", o.Unavailable},
		{"other 5xx", o.Status5xx}, {"transport errors", o.Transport}, {"redirected (307)", o.Redirected}} {
		if row.n > 0 || row.name == "ok" {
			fmt.Fprintf(w, "  %-22s %12d\n", row.name, row.n)
		}
	}
	quantRow(w, "latency ms", r.Latency)
	if l := r.Lost; l != nil {
		fmt.Fprintf(w, "  lost answers %d, resolved with /v1/status: %d committed, %d not committed, %d unknown\n",
			l.Count, l.Committed, l.NotCommitted, l.Unknown)
	}
	if s.Version != nil {
		fmt.Fprintf(w, "  %-22s %12.0f /s   commits/versions %.3f\n", "GET /v1/version", s.Version.Throughput, s.VersionRatio)
		quantRow(w, "version latency ms", s.Version.Latency)
	}
	if sub := r.Subscribers; sub != nil {
		fmt.Fprintf(w, "  subscribers %d (durable=%v): %d events (%.0f/s), %d gaps, %d resubscribes\n",
			sub.Count, sub.Durable, sub.Events, sub.EventsPerSec, sub.Gaps, sub.Resubscribes)
		if len(sub.EventsByServer) > 1 {
			addrs := slices.Sorted(maps.Keys(sub.EventsByServer))
			fmt.Fprintf(w, "  subscriber events by server:")
			for _, a := range addrs {
				fmt.Fprintf(w, " %s %d", a, sub.EventsByServer[a])
			}
			fmt.Fprintln(w)
		}
		quantRow(w, "lag ms (send→event)", sub.Lag)
	}
	if a := r.Admin; a != nil {
		fmt.Fprintf(w, "  admin %.0f/s: %d ok, %d errors\n", a.RatePerSec, a.Outcomes.OK, a.Outcomes.Errors())
		quantRow(w, "admin latency ms", a.Latency)
	}
	if s.Server != nil {
		names := make([]string, 0, len(s.Server.Histograms))
		for n := range s.Server.Histograms {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			h := s.Server.Histograms[n]
			fmt.Fprintf(w, "  server %s: %.0f obs, mean %.4g, p50 %.4g, p99 %.4g\n", n, h.Count, h.Mean, h.P50, h.P99)
		}
	} else if s.ServerError != "" {
		fmt.Fprintf(w, "  server metrics: %s\n", s.ServerError)
	}
	for _, c := range s.Targets {
		mark := "ok  "
		if !c.OK {
			mark = "MISS"
		}
		fmt.Fprintf(w, "  target %s %-28s got %10.4g want %s %s\n", mark, c.Name, c.Got, c.Want, c.Note)
	}
}

func quantRow(w io.Writer, name string, q workload.Quantiles) {
	fmt.Fprintf(w, "  %-22s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%d)\n",
		name, q.P50Ms, q.P90Ms, q.P99Ms, q.P999Ms, q.MaxMs, q.Count)
}
