package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

// randomTxns returns n transactions with contiguous versions from first,
// with random request ids, timestamps and operations of every type.
func randomTxns(rng *rand.Rand, first tx.Version, n int) []tx.Transaction {
	txns := make([]tx.Transaction, n)
	ts := rng.Int64()
	for i := range txns {
		t := &txns[i]
		t.Version = first + tx.Version(i)
		if rng.IntN(4) > 0 {
			t.RequestID = randomBytes(rng, 1+rng.IntN(36))
		}
		ts += rng.Int64N(2_000_000) - 1000 // mostly increasing, sometimes not
		t.TimestampUnixNano = ts
		for j := rng.IntN(5); j > 0; j-- {
			op := tx.Operation{Type: tx.OpType(1 + rng.IntN(3)), Key: randomBytes(rng, rng.IntN(40))}
			switch op.Type {
			case tx.OpWrite:
				op.Value = randomBytes(rng, rng.IntN(200))
			case tx.OpRangeDelete:
				op.End = randomBytes(rng, rng.IntN(40))
			}
			t.Operations = append(t.Operations, op)
		}
	}
	return txns
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// sameTxns compares transactions field by field, treating nil and empty
// slices as equal (the codec does not distinguish them).
func sameTxns(a, b []tx.Transaction) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d transactions, want %d", len(a), len(b))
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Version != y.Version || !bytes.Equal(x.RequestID, y.RequestID) || x.TimestampUnixNano != y.TimestampUnixNano || len(x.Operations) != len(y.Operations) {
			return fmt.Errorf("txn %d: got %+v, want %+v", i, *x, *y)
		}
		for j := range x.Operations {
			p, q := x.Operations[j], y.Operations[j]
			if p.Type != q.Type || !bytes.Equal(p.Key, q.Key) || !bytes.Equal(p.End, q.End) || !bytes.Equal(p.Value, q.Value) {
				return fmt.Errorf("txn %d op %d: got %+v, want %+v", i, j, p, q)
			}
		}
	}
	return nil
}

func TestSegmentRoundTrip(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	var reused []tx.Transaction
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		first := tx.Version(1 + rng.Uint64N(1<<40))
		n := rng.IntN(60)
		if n == 0 {
			first = 0
		}
		want := randomTxns(rng, first, n)
		leader := randomBytes(rng, rng.IntN(40))
		prefix := randomBytes(rng, rng.IntN(5))
		enc := EncodeSegment(bytes.Clone(prefix), leader, want)
		if !bytes.Equal(enc[:len(prefix)], prefix) {
			t.Fatalf("seed %d: EncodeSegment clobbered dst", seed)
		}
		seg := enc[len(prefix):]
		h, got, err := DecodeSegment(seg, reused)
		if err != nil {
			t.Fatalf("seed %d: DecodeSegment: %v", seed, err)
		}
		reused = got
		wantLast := tx.Version(0)
		if n > 0 {
			wantLast = first + tx.Version(n) - 1
		}
		if h.First != first || h.Last != wantLast || h.Count != uint32(n) || !bytes.Equal(h.LeaderID, leader) || h.Bytes != len(seg) {
			t.Fatalf("seed %d: header %+v, want first %d last %d count %d leader %x bytes %d", seed, h, first, wantLast, n, leader, len(seg))
		}
		if err := sameTxns(got, want); err != nil {
			t.Fatalf("seed %d (replay: rand.NewPCG(%d, 7)): %v", seed, seed, err)
		}
		// The iterator sees the same transactions.
		var r SegmentReader
		if _, err := r.Reset(seg); err != nil {
			t.Fatalf("seed %d: Reset: %v", seed, err)
		}
		i := 0
		for tr, ok := r.Next(); ok; tr, ok = r.Next() {
			if err := sameTxns([]tx.Transaction{*tr}, want[i:i+1]); err != nil {
				t.Fatalf("seed %d: reader: %v", seed, err)
			}
			i++
		}
		if r.Err() != nil || i != n {
			t.Fatalf("seed %d: reader stopped after %d of %d: %v", seed, i, n, r.Err())
		}
	}
}

func TestGenesisSegment(t *testing.T) {
	seg := EncodeSegment(nil, []byte("leader-1"), nil)
	h, txns, err := DecodeSegment(seg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !h.IsGenesis() || h.First != 0 || h.Last != 0 || len(txns) != 0 || string(h.LeaderID) != "leader-1" {
		t.Fatalf("genesis decoded as %+v, %d txns", h, len(txns))
	}
}

// Every single-bit flip and every truncation of a valid segment must be
// detected as corruption (the checksum covers everything but magic/format,
// which are compared exactly).
func TestSegmentDamageDetected(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seg := EncodeSegment(nil, []byte("L"), randomTxns(rng, 10, 5))
	for i := range seg {
		for bit := range 8 {
			bad := bytes.Clone(seg)
			bad[i] ^= 1 << bit
			if _, _, err := DecodeSegment(bad, nil); !errors.Is(err, ErrCorruption) {
				t.Fatalf("flip byte %d bit %d: err %v, want ErrCorruption", i, bit, err)
			}
		}
	}
	for n := range len(seg) {
		if _, err := DecodeSegmentHeader(seg[:n]); !errors.Is(err, ErrCorruption) {
			t.Fatalf("truncated to %d: err %v, want ErrCorruption", n, err)
		}
	}
	if _, err := DecodeSegmentHeader(append(bytes.Clone(seg), 0)); !errors.Is(err, ErrCorruption) {
		t.Fatalf("padded: err %v, want ErrCorruption", err)
	}
}

// reseal recomputes the checksum so that tests reach the body parser with
// hostile contents, as a forger (or the fuzzer) could.
func reseal(seg []byte) []byte {
	return resealForTest(seg)
}

func TestSegmentHostileBody(t *testing.T) {
	valid := EncodeSegment(nil, nil, randomTxns(rand.New(rand.NewPCG(3, 4)), 1, 3))
	cases := map[string]func([]byte) []byte{
		"count too high": func(b []byte) []byte { b[offCount]++; b[offLast]++; return b },
		"count too low":  func(b []byte) []byte { b[offCount]--; b[offLast]--; return b },
		"last mismatch":  func(b []byte) []byte { b[offLast]++; return b },
		"bad op type": func(b []byte) []byte {
			s := EncodeSegment(nil, nil, []tx.Transaction{{Version: 1, Operations: []tx.Operation{{Type: tx.OpDelete, Key: []byte("k")}}}})
			s[len(s)-3] = 9
			return s
		},
		"huge length": func(b []byte) []byte {
			s := EncodeSegment(nil, nil, []tx.Transaction{{Version: 1, RequestID: []byte("r")}})
			s[SegmentHeaderBytes] = 0xff
			return s
		},
	}
	cases["genesis with versions"] = func([]byte) []byte {
		s := EncodeSegment(nil, nil, nil)
		s[offFirst] = 1
		return s
	}
	cases["padded varint"] = func([]byte) []byte {
		s := EncodeSegment(nil, nil, []tx.Transaction{{Version: 1}})
		// request id length 0 as 0x80 0x00 instead of 0x00.
		s = append(s[:SegmentHeaderBytes:SegmentHeaderBytes], append([]byte{0x80}, s[SegmentHeaderBytes:]...)...)
		binary.LittleEndian.PutUint32(s[offBodyLen:], uint32(len(s)-SegmentHeaderBytes))
		return s
	}
	for name, damage := range cases {
		bad := reseal(damage(bytes.Clone(valid)))
		if _, _, err := DecodeSegment(bad, nil); !errors.Is(err, ErrCorruption) {
			t.Errorf("%s: err %v, want ErrCorruption", name, err)
		}
	}
}

func TestSegmentNames(t *testing.T) {
	for _, v := range []tx.Version{0, 1, 42, 1<<64 - 1} {
		name := string(AppendSegmentName(nil, v))
		if len(name) != SegmentNameDigits {
			t.Fatalf("name %q of %d has %d digits", name, v, len(name))
		}
		got, ok := ParseSegmentName(name)
		if !ok || got != v {
			t.Fatalf("ParseSegmentName(%q) = %d, %v; want %d", name, got, ok, v)
		}
	}
	if AppendSegmentName(nil, 7)[0] != '0' || string(AppendSegmentName(nil, 7)) >= string(AppendSegmentName(nil, 10)) {
		t.Fatal("names do not sort like versions")
	}
	for _, bad := range []string{"", "1", "0000000000000000000x", "99999999999999999999", "+0000000000000000001", "000000000000000000001"} {
		if _, ok := ParseSegmentName(bad); ok {
			t.Errorf("ParseSegmentName(%q) accepted", bad)
		}
	}
}

func TestDecodeSegmentAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	seg := EncodeSegment(nil, []byte("L"), randomTxns(rand.New(rand.NewPCG(5, 6)), 100, 200))
	_, txns, err := DecodeSegment(seg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(50, func() { _, txns, err = DecodeSegment(seg, txns) }); a != 0 || err != nil {
		t.Fatalf("DecodeSegment into a reused slice: %v allocs, err %v", a, err)
	}
	var r SegmentReader
	if a := testing.AllocsPerRun(50, func() {
		if _, err := r.Reset(seg); err != nil {
			panic(err)
		}
		for _, ok := r.Next(); ok; _, ok = r.Next() {
		}
	}); a != 0 {
		t.Fatalf("SegmentReader: %v allocs per segment", a)
	}
	buf := EncodeSegment(nil, []byte("L"), txns)
	if a := testing.AllocsPerRun(50, func() { buf = EncodeSegment(buf[:0], []byte("L"), txns) }); a != 0 {
		t.Fatalf("EncodeSegment into a big enough buffer: %v allocs", a)
	}
}

func FuzzDecodeSegment(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	f.Add(EncodeSegment(nil, []byte("leader"), nil))
	f.Add(EncodeSegment(nil, nil, randomTxns(rng, 1, 1)))
	f.Add(EncodeSegment(nil, []byte("x"), randomTxns(rng, 77, 4)))
	f.Add([]byte("WSEG"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		// Reach the body parser too: the fuzzer cannot forge checksums.
		for _, in := range [][]byte{b, resealForTest(bytes.Clone(b))} {
			h, txns, err := DecodeSegment(in, nil)
			if err != nil {
				if !errors.Is(err, ErrCorruption) {
					t.Fatalf("error %v does not wrap ErrCorruption", err)
				}
				continue
			}
			if uint32(len(txns)) != h.Count {
				t.Fatalf("%d txns, header count %d", len(txns), h.Count)
			}
			// A decodable segment re-encodes to the same bytes.
			if re := EncodeSegment(nil, h.LeaderID, txns); !bytes.Equal(re, in) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, in)
			}
		}
	})
}
