package workload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// commitBody mirrors API.md's POST /v1/commit; decoding with
// DisallowUnknownFields catches a misspelt field as the server would.
type commitBody struct {
	RequestID     *string `json:"request_id"`
	ReadVersion   *uint64 `json:"read_version"`
	Preconditions []struct {
		Type  string `json:"type"`
		Key   []byte `json:"key"`
		Begin []byte `json:"begin"`
		End   []byte `json:"end"`
	} `json:"preconditions"`
	Operations []struct {
		Type  string `json:"type"`
		Key   []byte `json:"key"`
		Value []byte `json:"value"`
	} `json:"operations"`
}

func decodeCommit(t *testing.T, body []byte) commitBody {
	t.Helper()
	var c commitBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("body is not a valid commit: %v\n%s", err, body)
	}
	return c
}

func keyIndex(t *testing.T, key []byte, shape Shape) uint64 {
	t.Helper()
	if len(key) != shape.KeyBytes || key[0] != 'k' {
		t.Fatalf("key %q: want %d bytes starting with k", key, shape.KeyBytes)
	}
	i, err := strconv.ParseUint(string(key[1:]), 10, 64)
	if err != nil || i > shape.Keys {
		t.Fatalf("key %q: index %d of %d keys (%v)", key, i, shape.Keys, err)
	}
	return i
}

func TestCommitBodiesMatchTheShape(t *testing.T) {
	shapes := []Shape{DefaultShape()}
	s := DefaultShape()
	s.Distribution, s.PointReads, s.RangeReads, s.Writes, s.ValueBytes = "zipf", 3, 2, 5, 1024
	shapes = append(shapes, s)
	s = DefaultShape()
	s.PointReads, s.Writes, s.RequestID, s.Keys, s.KeyBytes = 0, 100, false, 1000, 8
	shapes = append(shapes, s)
	for i, shape := range shapes {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			src, err := NewSource(shape, 0xabcdef)
			if err != nil {
				t.Fatal(err)
			}
			g := src.Generator(7)
			for n := 0; n < 200; n++ {
				body := g.AppendCommit(nil, 42, 1_700_000_000_123_456_789)
				c := decodeCommit(t, body)
				if shape.RequestID {
					if c.RequestID == nil || len(*c.RequestID) < 20 || len(*c.RequestID) > 256 {
						t.Fatalf("request_id %v: want 20..256 bytes", c.RequestID)
					}
					sent, ok := SendTimeOf([]byte(*c.RequestID), src.RunID())
					if !ok || sent != 1_700_000_000_123_456_789 {
						t.Fatalf("SendTimeOf(%q) = %d, %v", *c.RequestID, sent, ok)
					}
					if _, ok := SendTimeOf([]byte(*c.RequestID), "0000000000000000"); ok {
						t.Fatal("another run's id accepted")
					}
				} else if c.RequestID != nil {
					t.Fatal("request_id sent although disabled")
				}
				if len(c.Preconditions) != shape.PointReads+shape.RangeReads || len(c.Operations) != shape.Writes {
					t.Fatalf("%d preconditions, %d operations; want %d, %d", len(c.Preconditions), len(c.Operations), shape.PointReads+shape.RangeReads, shape.Writes)
				}
				if len(c.Preconditions) > 0 && (c.ReadVersion == nil || *c.ReadVersion != 42) {
					t.Fatalf("read_version %v, want 42", c.ReadVersion)
				}
				for _, p := range c.Preconditions {
					switch p.Type {
					case "point_read":
						keyIndex(t, p.Key, shape)
					case "range_read":
						b, e := keyIndex(t, p.Begin, shape), keyIndex(t, p.End, shape)
						if e-b != uint64(shape.RangeKeys) || bytes.Compare(p.Begin, p.End) >= 0 {
							t.Fatalf("range [%q, %q): want %d keys, begin < end", p.Begin, p.End, shape.RangeKeys)
						}
					default:
						t.Fatalf("precondition type %q", p.Type)
					}
				}
				for _, op := range c.Operations {
					if op.Type != "write" || len(op.Value) != shape.ValueBytes {
						t.Fatalf("operation %q with %d-byte value", op.Type, len(op.Value))
					}
					keyIndex(t, op.Key, shape)
				}
			}
		})
	}
}

func TestHotFractionMakesReadModifyWrites(t *testing.T) {
	shape := DefaultShape()
	shape.HotFraction, shape.HotKeys = 0.5, 4
	src, err := NewSource(shape, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := src.Generator(0)
	hot := 0
	for n := 0; n < 2000; n++ {
		c := decodeCommit(t, g.AppendCommit(nil, 9, 0))
		if len(c.Preconditions) == 1 && len(c.Operations) == 1 && bytes.Equal(c.Preconditions[0].Key, c.Operations[0].Key) &&
			keyIndex(t, c.Operations[0].Key, shape) < 4 {
			hot++
		}
	}
	// Binomial(2000, 0.5): 6 sigma is about 134.
	if hot < 1000-150 || hot > 1000+150 {
		t.Fatalf("%d of 2000 commits were hot read-modify-writes, want about 1000", hot)
	}
}

func TestAppendCommitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	shape := DefaultShape()
	shape.Distribution, shape.RangeReads, shape.HotFraction = "zipf", 1, 0.1
	src, err := NewSource(shape, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := src.Generator(0)
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() { buf = g.AppendCommit(buf[:0], 5, 5) }); n != 0 {
		t.Fatalf("AppendCommit allocates %v times per call", n)
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	s := Shape{Keys: 1, Distribution: "pareto", KeyBytes: 1, ValueBytes: -1, Writes: -1, HotFraction: 2}
	err := s.Validate()
	if err == nil {
		t.Fatal("invalid shape accepted")
	}
	for _, want := range []string{"keys 1", "distribution", "key-bytes", "value-bytes", "writes", "hot-fraction"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestZipfKeyMapIsABijection(t *testing.T) {
	for _, n := range []uint64{2, 3, 10, 97, 1000, 1024, 65536} {
		z, err := NewZipf(n, 0.99)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		for r := uint64(0); r < n; r++ {
			k := z.KeyOfRank(r)
			if k >= n || seen[k] {
				t.Fatalf("n %d: rank %d maps to key %d (out of range or taken)", n, r, k)
			}
			seen[k] = true
		}
	}
}

// TestZipfFrequencies compares the drawn frequency of the hottest ranks with
// the exact Zipf probabilities, and the mass of the top 1% with its sum.
func TestZipfFrequencies(t *testing.T) {
	const n, draws = 10_000, 400_000
	for _, theta := range []float64{0.5, 0.8, 0.99} {
		z, err := NewZipf(n, theta)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(11, uint64(theta*100)))
		counts := make([]int, n)
		for i := 0; i < draws; i++ {
			counts[z.Rank(rng)]++
		}
		for r := uint64(0); r < 2; r++ { // ranks 0 and 1 are exact in Gray's method
			p := z.Probability(r)
			want, sigma := p*draws, math.Sqrt(p*(1-p)*draws)
			if math.Abs(float64(counts[r])-want) > 6*sigma {
				t.Errorf("theta %v rank %d: drawn %d times, want %.0f ± %.0f", theta, r, counts[r], want, 6*sigma)
			}
		}
		// Gray's method approximates the tail; the top-1% mass stays within 2%.
		var top int
		var topP float64
		for r := 0; r < n/100; r++ {
			top += counts[r]
			topP += z.Probability(uint64(r))
		}
		if got := float64(top) / draws; math.Abs(got-topP) > 0.02 {
			t.Errorf("theta %v: top 1%% ranks got %.3f of draws, want %.3f", theta, got, topP)
		}
	}
}

func TestUniformCoversTheKeySpace(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	u := uniformKeys{n: 10}
	counts := make([]int, 10)
	for i := 0; i < 100_000; i++ {
		counts[u.Next(rng)]++
	}
	for k, c := range counts {
		if c < 9000 || c > 11000 {
			t.Fatalf("key %d drawn %d of 100000 times, want about 10000", k, c)
		}
	}
}

func TestKeysOrderLikeTheirIndexes(t *testing.T) {
	shape := DefaultShape()
	src, _ := NewSource(shape, 1)
	g := src.Generator(0)
	prev := []byte(nil)
	for _, i := range []uint64{0, 1, 9, 10, 99, 100, 999_999, 1_000_000} {
		b64 := g.appendKeyB64(nil, i)
		k, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Fatalf("key %d (%q) does not sort after %q", i, k, prev)
		}
		prev = k
	}
}
