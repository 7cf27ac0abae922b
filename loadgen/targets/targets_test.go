package targets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEvaluateNamesEveryMiss(t *testing.T) {
	tg := Target{MinOKPerSec: 1000, MaxP99Ms: 5, MinVersionRatio: 0.8, MaxLagP99OverCommitMs: 20,
		MaxDropVsBaseline: 0.2, MaxMetricRate: map[string]float64{"puts_total": 200, "absent_total": 1}}
	m := Measured{OKPerSec: 900, P99Ms: 4, VersionRatio: 0.9, LagP99Ms: 20, HasLag: true,
		BaselineOKPerSec: 1000, MetricRates: map[string]float64{"puts_total": 150}}
	var missed []string
	for _, c := range Misses(Evaluate(tg, m)) {
		missed = append(missed, c.Name)
	}
	want := "ok_per_sec rate(absent_total)"
	if strings.Join(missed, " ") != want {
		t.Fatalf("missed %v, want %s", missed, want)
	}
	m.LagP99Ms = 25
	m.HasLag = false
	m.VersionRatio = 0
	if n := len(Misses(Evaluate(tg, m))); n != 4 {
		t.Fatalf("unmeasured lag and version ratio must miss: %d misses", n)
	}
}

func TestTheRepositoryTargetsLoad(t *testing.T) {
	path := filepath.Join("..", "..", "bench", "targets.toml")
	if _, err := os.Stat(path); err != nil {
		t.Skip("bench/targets.toml not present")
	}
	for _, name := range []string{"disk-uniform", "disk-zipf", "fakes3-20ms", "subscribers-100", "large-txn", "disk-pipelined", "disk-open-half", "failover", "failover-subs-leader", "failover-subs-replicas"} {
		tg, err := Load(path, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(tg.Args) == 0 || tg.Description == "" {
			t.Fatalf("scenario %s has no args or description", name)
		}
	}
	if _, err := Load(path, "no-such"); err == nil || !strings.Contains(err.Error(), "disk-uniform") {
		t.Fatalf("unknown scenario error %v does not list the scenarios", err)
	}
}

func TestLoadRejectsUnknownKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.toml")
	os.WriteFile(path, []byte("[scenario.a]\nmin_ok_per_secs = 5\n"), 0o644)
	if _, err := Load(path, "a"); err == nil || !strings.Contains(err.Error(), "min_ok_per_secs") {
		t.Fatalf("typo not caught: %v", err)
	}
}
