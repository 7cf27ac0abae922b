// Package targets checks a loadgen run against the named targets of a TOML
// file (bench/targets.toml). A scenario names the loadgen flags that make it
// (args) and the figures it must reach; Check reports every miss at once.
//
// File format:
//
//	[scenario.NAME]
//	description = "what it is"
//	args = ["--connections", "64", "--writes", "1"]  # loadgen flags; the command line overrides
//	min_ok_per_sec = 50000              # commits/s floor
//	max_p99_ms = 10                     # commit latency p99 ceiling
//	min_version_ratio = 0.8             # ok/s over GET /v1/version/s (needs --compare-version)
//	max_lag_p99_ms = 50                 # subscriber lag p99 ceiling
//	max_lag_p99_over_commit_ms = 20     # lag p99 minus commit p99
//	max_drop_vs_baseline = 0.2          # ok/s may fall at most 20% below --baseline's
//	[scenario.NAME.max_metric_rate]     # server counters: increase per second ceiling
//	"weaseldb_persist_segment_writes_total" = 200
//
// A zero or absent figure is not checked.
package targets

import (
	"fmt"
	"os"
	"sort"

	"github.com/BurntSushi/toml"
)

// Target is one scenario of the file.
type Target struct {
	Description           string             `toml:"description"`
	Args                  []string           `toml:"args"`
	MinOKPerSec           float64            `toml:"min_ok_per_sec"`
	MaxP99Ms              float64            `toml:"max_p99_ms"`
	MinVersionRatio       float64            `toml:"min_version_ratio"`
	MaxLagP99Ms           float64            `toml:"max_lag_p99_ms"`
	MaxLagP99OverCommitMs float64            `toml:"max_lag_p99_over_commit_ms"`
	MaxDropVsBaseline     float64            `toml:"max_drop_vs_baseline"`
	MaxMetricRate         map[string]float64 `toml:"max_metric_rate"`
}

type file struct {
	Scenario map[string]Target `toml:"scenario"`
}

// Load reads the file and returns the named scenario.
func Load(path, scenario string) (Target, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Target{}, fmt.Errorf("targets: %w", err)
	}
	var f file
	md, err := toml.Decode(string(raw), &f)
	if err != nil {
		return Target{}, fmt.Errorf("targets %s: %w", path, err)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		return Target{}, fmt.Errorf("targets %s: unknown keys %v", path, undec)
	}
	t, ok := f.Scenario[scenario]
	if !ok {
		names := make([]string, 0, len(f.Scenario))
		for n := range f.Scenario {
			names = append(names, n)
		}
		sort.Strings(names)
		return Target{}, fmt.Errorf("targets %s: no scenario %q (have %v)", path, scenario, names)
	}
	return t, nil
}

// Measured is what a run produced. A figure that was not measured is
// reported as a miss when the target asks for it (the run lacks an option).
type Measured struct {
	OKPerSec         float64
	P99Ms            float64
	VersionRatio     float64 // 0: not measured
	LagP99Ms         float64 // 0 with HasLag false: not measured
	HasLag           bool
	BaselineOKPerSec float64            // 0: no baseline given
	MetricRates      map[string]float64 // series → increase per second during the run
}

// Check is one comparison.
type Check struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	OK   bool    `json:"ok"`
	Note string  `json:"note,omitempty"`
}

// Evaluate compares m with t, one Check per target figure set.
func Evaluate(t Target, m Measured) []Check {
	var cs []Check
	floor := func(name string, want, got float64) {
		if want > 0 {
			cs = append(cs, Check{Name: name, Want: fmt.Sprintf(">= %g", want), Got: got, OK: got >= want})
		}
	}
	ceiling := func(name string, want, got float64, measured bool) {
		if want > 0 {
			c := Check{Name: name, Want: fmt.Sprintf("<= %g", want), Got: got, OK: measured && got <= want}
			if !measured {
				c.Note = "not measured by this run"
			}
			cs = append(cs, c)
		}
	}
	floor("ok_per_sec", t.MinOKPerSec, m.OKPerSec)
	ceiling("p99_ms", t.MaxP99Ms, m.P99Ms, true)
	if t.MinVersionRatio > 0 {
		c := Check{Name: "version_ratio", Want: fmt.Sprintf(">= %g", t.MinVersionRatio), Got: m.VersionRatio, OK: m.VersionRatio >= t.MinVersionRatio}
		if m.VersionRatio == 0 {
			c.Note = "needs --compare-version"
		}
		cs = append(cs, c)
	}
	ceiling("lag_p99_ms", t.MaxLagP99Ms, m.LagP99Ms, m.HasLag)
	ceiling("lag_p99_over_commit_ms", t.MaxLagP99OverCommitMs, m.LagP99Ms-m.P99Ms, m.HasLag)
	if t.MaxDropVsBaseline > 0 {
		c := Check{Name: "drop_vs_baseline", Want: fmt.Sprintf("<= %g", t.MaxDropVsBaseline)}
		if m.BaselineOKPerSec > 0 {
			c.Got = 1 - m.OKPerSec/m.BaselineOKPerSec
			c.OK = c.Got <= t.MaxDropVsBaseline
		} else {
			c.Note = "needs --baseline FILE"
		}
		cs = append(cs, c)
	}
	names := make([]string, 0, len(t.MaxMetricRate))
	for n := range t.MaxMetricRate {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		got, ok := m.MetricRates[n]
		c := Check{Name: "rate(" + n + ")", Want: fmt.Sprintf("<= %g/s", t.MaxMetricRate[n]), Got: got, OK: ok && got <= t.MaxMetricRate[n]}
		if !ok {
			c.Note = "series not in /metrics"
		}
		cs = append(cs, c)
	}
	return cs
}

// Misses returns the checks that failed.
func Misses(cs []Check) []Check {
	var out []Check
	for _, c := range cs {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}
