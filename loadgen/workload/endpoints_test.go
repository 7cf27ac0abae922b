package workload

import (
	"slices"
	"testing"
)

// Subscribers spread over the replicas take them round robin, with the
// leader only as the last resort; "all" includes the leader in the turn.
func TestSpreadRoundRobin(t *testing.T) {
	ends, err := ParseEndpoints("l:1,r1:2,http://r2:3")
	if err != nil {
		t.Fatal(err)
	}
	first := func(on string, i int) []string {
		s, err := ends.Spread(on, i)
		if err != nil {
			t.Fatalf("Spread(%q, %d): %v", on, i, err)
		}
		return s.Addrs()
	}
	for i, want := range [][]string{{"r1:2", "r2:3", "l:1"}, {"r2:3", "r1:2", "l:1"}, {"r1:2", "r2:3", "l:1"}} {
		if got := first("replicas", i); !slices.Equal(got, want) {
			t.Errorf("replicas, subscriber %d: %v, want %v", i, got, want)
		}
	}
	for i, want := range []string{"l:1", "r1:2", "r2:3", "l:1"} {
		if got := first("all", i); got[0] != want || len(got) != 3 {
			t.Errorf("all, subscriber %d: %v, want %s first of 3", i, got, want)
		}
	}
	if s, _ := ends.Spread("leader", 5); s != ends {
		t.Errorf("leader: not the shared endpoints the commits use")
	}
	one, _ := ParseEndpoints("l:1")
	if _, err := one.Spread("replicas", 0); err == nil {
		t.Errorf("replicas with a single endpoint: no error")
	}
	l := DefaultLoad()
	l.SubscribeOn = "followers"
	if l.Validate() == nil {
		t.Errorf("subscribe-on followers accepted")
	}
}
