//go:build plantbugs

package sim

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/weaseldb/weaseldb/internal/planted"
)

// TestPlantedBugsCaught: each planted bug (internal/planted) makes the
// simulator fail within make test's seed budget (seedBudget, without
// -short). It runs this test binary again per bug, since a bug may panic
// an engine goroutine and end the process.
//
//	go test -tags plantbugs -count=1 -run TestPlantedBugsCaught -v ./engine/sim/
func TestPlantedBugsCaught(t *testing.T) {
	if os.Getenv("WEASELDB_PLANT") != "" {
		t.Skip("running as a child")
	}
	seedLine := regexp.MustCompile(`sim: seed (\d+); replay`)
	for _, bug := range planted.All {
		t.Run(string(bug), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSim$", "-test.count=1")
			cmd.Env = append(os.Environ(), "WEASELDB_PLANT="+string(bug), "SIM_SEEDS="+strconv.Itoa(makeTestSeeds))
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%s: the simulator passed %d seeds with the bug planted", bug, makeTestSeeds)
			}
			m := seedLine.FindAllSubmatch(out, -1)
			if len(m) == 0 {
				t.Fatalf("%s: the child failed without running a seed: %v\n%s", bug, err, out)
			}
			t.Logf("%s: caught at seed %s", bug, m[len(m)-1][1])
		})
	}
}
