package jsonstream

import (
	"testing"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/tx"
)

// TestParseNoAllocs: with a reused Parser, Arena and Commit, parsing a body
// allocates nothing once warm, whole or in small pieces (the slow string
// path through the scratch buffer), escapes included.
func TestParseNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	p, a, c := NewParser(Limits{}), arena.New(0), &tx.Commit{}
	for _, size := range []string{"small", "medium", "large"} {
		body := benchBody(size)
		for _, chunk := range []int{len(body), 7} {
			run := func() {
				a.Reset()
				p.Reset(a, c)
				for rest := body; len(rest) > 0; rest = rest[min(chunk, len(rest)):] {
					if err := p.Write(rest[:min(chunk, len(rest))]); err != nil {
						t.Fatal(err)
					}
				}
				if err := p.Finish(); err != nil {
					t.Fatal(err)
				}
			}
			run()
			if n := testing.AllocsPerRun(20, run); n != 0 {
				t.Errorf("%s body in %d-byte chunks: %.1f allocations per parse", size, chunk, n)
			}
		}
	}
	escaped := []byte(`{"request_id":"\u0072eq-\ud83d\ude00-0123456789abc","operations":[{"type":"write","key":"\u0041A==","value":"AA\u003d="}]}`)
	run := func() {
		a.Reset()
		if err := p.Parse(a, c, escaped); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Errorf("escaped body: %.1f allocations per parse", n)
	}
}
