package conflict

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/weaseldb/weaseldb/internal/invariants"
	"github.com/weaseldb/weaseldb/tx"
)

// This file is the randomized differential test: op streams run against
// Set and Model and every Check must agree. A failing stream is shrunk to
// a minimal one and printed with its seed; replay one seed with
//
//	CONFLICT_SEED=1234 go test -run TestDifferential ./engine/conflict/
//
// The long form (go test without -short) runs millions of operations.

type opKind uint8

const (
	opCheck opKind = iota
	opWrite
	opOldest
)

// op is one operation of a stream: data that prints and replays.
type op struct {
	kind    opKind
	reads   []Read
	writes  []Write
	version tx.Version // opWrite: the version written; opOldest: the new oldest
}

func (o op) String() string {
	var b strings.Builder
	switch o.kind {
	case opCheck:
		b.WriteString("check")
		for _, r := range o.reads {
			fmt.Fprintf(&b, " %s@%d", span(r.Begin, r.End), r.Version)
		}
	case opWrite:
		fmt.Fprintf(&b, "write@%d", o.version)
		for _, w := range o.writes {
			fmt.Fprintf(&b, " %s", span(w.Begin, w.End))
		}
	case opOldest:
		fmt.Fprintf(&b, "oldest %d", o.version)
	}
	return b.String()
}

func span(begin, end []byte) string {
	if len(end) == 0 {
		return strconv.Quote(string(begin))
	}
	return "[" + strconv.Quote(string(begin)) + "," + strconv.Quote(string(end)) + ")"
}

// genConfig shapes a random stream.
type genConfig struct {
	alphabet   []byte
	keyLenMax  int
	prefix     []byte // shared by most keys: the radix-tree worst case
	rangeShare float64
	ops        int
	// eager: sweep a few boundaries per SetOldestVersion and rebuild at
	// the least garbage, to exercise those paths in small streams.
	eager bool
}

var genConfigs = []genConfig{
	{alphabet: []byte{0x00, 0x01, 'a', 0xff}, keyLenMax: 3, rangeShare: 0.3, ops: 200},
	{alphabet: []byte("abcdefgh"), keyLenMax: 2, rangeShare: 0.5, ops: 300},
	{alphabet: []byte{0x00, 0xff}, keyLenMax: 12, prefix: bytes.Repeat([]byte{'p'}, 9), rangeShare: 0.3, ops: 300},
	{alphabet: []byte("0123456789"), keyLenMax: 10, rangeShare: 0.1, ops: 2000},
	{alphabet: []byte("0123456789"), keyLenMax: 10, rangeShare: 0.1, ops: 2000, eager: true},
	{alphabet: []byte{0x00, 0x01, 'a', 0xff}, keyLenMax: 4, rangeShare: 0.3, ops: 500, eager: true},
	{alphabet: []byte{0x00, 0xff}, keyLenMax: 14, prefix: bytes.Repeat([]byte{'p'}, 9), rangeShare: 0.2, ops: 1000, eager: true},
	// Keys straddling the 16 bytes kept inline: ties on the inline part
	// are decided by length or by the arena suffix.
	{alphabet: []byte{0x00, 0x01, 0xff}, keyLenMax: 4, prefix: bytes.Repeat([]byte{'q'}, 14), rangeShare: 0.3, ops: 500, eager: true},
}

type generator struct {
	rng    *rand.Rand
	cfg    genConfig
	next   tx.Version // next version to write
	oldest tx.Version
}

func newGenerator(seed uint64, cfg genConfig) *generator {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// Versions far apart: start anywhere, including near the top of uint64.
	starts := []tx.Version{0, 1, 1 << 32, math.MaxUint64 / 2, math.MaxUint64 - 1<<41}
	start := starts[rng.IntN(len(starts))]
	return &generator{rng: rng, cfg: cfg, next: start + 1, oldest: start}
}

func (g *generator) key() []byte {
	n := g.rng.IntN(g.cfg.keyLenMax + 1)
	k := make([]byte, 0, n+len(g.cfg.prefix))
	if len(g.cfg.prefix) > 0 && g.rng.IntN(4) != 0 {
		k = append(k, g.cfg.prefix[:g.rng.IntN(len(g.cfg.prefix)+1)]...)
	}
	for range n {
		k = append(k, g.cfg.alphabet[g.rng.IntN(len(g.cfg.alphabet))])
	}
	return k
}

// span returns begin, end: a point (end nil) or a range, now and then an
// empty or whole-keyspace one.
func (g *generator) span() ([]byte, []byte) {
	if g.rng.Float64() >= g.cfg.rangeShare {
		return g.key(), nil
	}
	switch g.rng.IntN(20) {
	case 0:
		return []byte{}, bytes.Repeat([]byte{0xff}, 1+g.rng.IntN(3)) // (nearly) everything
	case 1:
		k := g.key()
		return k, append(bytes.Clone(k), 0) // a point spelled as a range
	case 2:
		return g.key(), g.key() // maybe empty or inverted
	}
	a, b := g.key(), g.key()
	switch c := bytes.Compare(a, b); {
	case c > 0:
		a, b = b, a
	case c == 0:
		b = append(b, g.cfg.alphabet[0])
	}
	return a, b
}

func (g *generator) readVersion() tx.Version {
	latest := g.next - 1
	window := uint64(latest - g.oldest)
	switch g.rng.IntN(8) {
	case 0:
		if g.oldest > 0 {
			return g.oldest - 1 - tx.Version(g.rng.Uint64N(min(uint64(g.oldest), 4))) // too old
		}
	case 1:
		return latest
	}
	return g.oldest + tx.Version(g.rng.Uint64N(window+1))
}

func (g *generator) op() op {
	switch x := g.rng.IntN(100); {
	case x < 45:
		o := op{kind: opCheck}
		for range 1 + g.rng.IntN(4) {
			b, e := g.span()
			o.reads = append(o.reads, Read{Begin: b, End: e, Version: g.readVersion()})
		}
		return o
	case x < 92:
		o := op{kind: opWrite, version: g.next}
		g.next += 1 + tx.Version(g.rng.IntN(2))
		if g.rng.IntN(50) == 0 && g.next < math.MaxUint64-1<<42 {
			g.next += 1 << 40 // a big jump
		}
		for range g.rng.IntN(4) {
			b, e := g.span()
			o.writes = append(o.writes, Write{Begin: b, End: e})
		}
		return o
	default:
		latest := g.next - 1
		v := g.oldest + tx.Version(g.rng.Uint64N(uint64(latest-g.oldest)+2))
		if g.rng.IntN(4) == 0 {
			// No-op or backwards: ignored. (Not below 0: wrapping to the top
			// would make the next write version wrap to 0, which breaks
			// AddWrites' contract and its invariants check.)
			v = g.oldest - min(tx.Version(g.rng.IntN(2)), g.oldest)
		}
		g.oldest = max(g.oldest, v)
		if g.oldest >= g.next {
			g.next = g.oldest + 1 // advancing past every write
		}
		return op{kind: opOldest, version: v}
	}
}

func (g *generator) stream() []op {
	ops := make([]op, g.cfg.ops)
	for i := range ops {
		ops[i] = g.op()
	}
	return ops
}

// replay runs ops on a fresh Set and Model from oldest and returns a
// description of the first disagreement, or "".
func replay(oldest tx.Version, eager bool, ops []op) string {
	s, m := New(oldest), NewModel(oldest)
	if eager {
		s.sweepMin = 3
		s.tree.freeMin, s.tree.garbageMin = 2, 16
	}
	var got, want []Result
	for i, o := range ops {
		switch o.kind {
		case opCheck:
			got = s.Check(o.reads, got[:0])
			want = m.Check(o.reads, want[:0])
			for j := range want {
				if got[j] != want[j] {
					return fmt.Sprintf("op %d (%v): read %d: set says %v, model says %v", i, o, j, got[j], want[j])
				}
			}
		case opWrite:
			w := o.writes
			if invariants.Enabled {
				w = properRanges(w) // AddWrites asserts begin < end
			}
			s.AddWrites(w, o.version)
			m.AddWrites(w, o.version)
		case opOldest:
			if o.version%3 == 0 {
				s.ForgetThrough(o.version) // the memory bound's way: same contract, at once
			} else {
				s.SetOldestVersion(o.version)
			}
			m.SetOldestVersion(o.version)
		}
		if s.OldestVersion() != m.OldestVersion() {
			return fmt.Sprintf("op %d (%v): oldest %d, model %d", i, o, s.OldestVersion(), m.OldestVersion())
		}
		if err := s.verify(); err != nil {
			return fmt.Sprintf("op %d (%v): invariant: %v", i, o, err)
		}
	}
	return ""
}

// shrink removes ops, then reads and writes inside ops, while replay still
// fails, and returns the smallest failing stream it found.
func shrink(oldest tx.Version, eager bool, ops []op) []op {
	fails := func(c []op) bool { return replay(oldest, eager, c) != "" }
	for chunk := len(ops) / 2; chunk >= 1; chunk /= 2 {
		for i := 0; i+chunk <= len(ops); {
			c := append(append([]op{}, ops[:i]...), ops[i+chunk:]...)
			if fails(c) {
				ops = c
			} else {
				i += chunk
			}
		}
	}
	for i := range ops {
		for j := 0; j < len(ops[i].reads); {
			c := append([]op{}, ops...)
			c[i].reads = append(append([]Read{}, ops[i].reads[:j]...), ops[i].reads[j+1:]...)
			if fails(c) {
				ops = c
			} else {
				j++
			}
		}
		for j := 0; j < len(ops[i].writes); {
			c := append([]op{}, ops...)
			c[i].writes = append(append([]Write{}, ops[i].writes[:j]...), ops[i].writes[j+1:]...)
			if fails(c) {
				ops = c
			} else {
				j++
			}
		}
	}
	return ops
}

func runSeed(t *testing.T, seed uint64, cfg genConfig) {
	t.Helper()
	g := newGenerator(seed, cfg)
	start := g.oldest
	ops := g.stream()
	if msg := replay(start, cfg.eager, ops); msg != "" {
		min := shrink(start, cfg.eager, ops)
		var b strings.Builder
		for _, o := range min {
			fmt.Fprintf(&b, "\n\t%v", o)
		}
		t.Fatalf("seed %d (replay: CONFLICT_SEED=%d): %s\nminimal stream from oldest %d (%d ops): %s%s",
			seed, seed, msg, start, len(min), replay(start, cfg.eager, min), b.String())
	}
}

func TestDifferential(t *testing.T) {
	if s := os.Getenv("CONFLICT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CONFLICT_SEED: %v", err)
		}
		for _, cfg := range genConfigs {
			runSeed(t, seed, cfg)
		}
		return
	}
	seeds := 1000 // about 7M operations over all configs; CONFLICT_SEED replays one
	if testing.Short() {
		seeds = 150
	}
	for ci, cfg := range genConfigs {
		for seed := uint64(0); seed < uint64(seeds); seed++ {
			runSeed(t, seed*uint64(len(genConfigs))+uint64(ci), cfg)
		}
	}
}

// properRanges drops the empty and inverted ranges, which release builds
// skip silently and invariants builds refuse.
func properRanges(ws []Write) []Write {
	var out []Write
	for _, w := range ws {
		if len(w.End) == 0 || bytes.Compare(w.Begin, w.End) < 0 {
			out = append(out, w)
		}
	}
	return out
}
