package persist

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

// benchTxns is a batch of n commit-like transactions: a 36-byte request id
// and one 16-byte-key, 100-byte-value write each, timestamps a microsecond
// apart — the shape of a batch from a steady commit stream.
func benchTxns(n int) []tx.Transaction {
	rng := rand.New(rand.NewPCG(1, 1))
	txns := make([]tx.Transaction, n)
	for i := range txns {
		txns[i] = tx.Transaction{
			Version:           tx.Version(1000 + i),
			RequestID:         randomBytes(rng, 36),
			TimestampUnixNano: 1_780_000_000_000_000_000 + int64(i)*1000,
			Operations:        []tx.Operation{{Type: tx.OpWrite, Key: randomBytes(rng, 16), Value: randomBytes(rng, 100)}},
		}
	}
	return txns
}

var benchSizes = []int{1, 100, 10000}

// BenchmarkSegmentEncode measures EncodeSegment against encoding/gob and
// encoding/json of the same transactions (the baselines; neither has a
// checksum, so the comparison favours them).
//
//	go test -run '^$' -bench 'Segment(En|De)code' -benchtime=200ms ./persist/
func BenchmarkSegmentEncode(b *testing.B) {
	for _, n := range benchSizes {
		txns := benchTxns(n)
		b.Run(fmt.Sprintf("codec/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			buf := EncodeSegment(nil, []byte("leader"), txns)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf = EncodeSegment(buf[:0], []byte("leader"), txns)
			}
		})
		b.Run(fmt.Sprintf("gob/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := gob.NewEncoder(&buf).Encode(txns); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
		b.Run(fmt.Sprintf("json/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := json.NewEncoder(&buf).Encode(txns); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
	}
}

// BenchmarkSegmentDecode measures DecodeSegment (into a reused slice, with
// checksum validation) and the SegmentReader against gob and json decoding.
func BenchmarkSegmentDecode(b *testing.B) {
	for _, n := range benchSizes {
		txns := benchTxns(n)
		seg := EncodeSegment(nil, []byte("leader"), txns)
		b.Run(fmt.Sprintf("codec/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(seg)))
			var out []tx.Transaction
			for b.Loop() {
				var err error
				if _, out, err = DecodeSegment(seg, out); err != nil || len(out) != n {
					b.Fatal(err, len(out))
				}
			}
		})
		b.Run(fmt.Sprintf("reader/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(seg)))
			var r SegmentReader
			for b.Loop() {
				if _, err := r.Reset(seg); err != nil {
					b.Fatal(err)
				}
				got := 0
				for _, ok := r.Next(); ok; _, ok = r.Next() {
					got++
				}
				if got != n {
					b.Fatal(got, r.Err())
				}
			}
		})
		var gb bytes.Buffer
		if err := gob.NewEncoder(&gb).Encode(txns); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("gob/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(gb.Len()))
			for b.Loop() {
				var out []tx.Transaction
				if err := gob.NewDecoder(bytes.NewReader(gb.Bytes())).Decode(&out); err != nil || len(out) != n {
					b.Fatal(err)
				}
			}
		})
		jb, err := json.Marshal(txns)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("json/txns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(jb)))
			for b.Loop() {
				var out []tx.Transaction
				if err := json.Unmarshal(jb, &out); err != nil || len(out) != n {
					b.Fatal(err)
				}
			}
		})
	}
}
