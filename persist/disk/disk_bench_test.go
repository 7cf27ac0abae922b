package disk

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// streamTxnsPerSec is the steady commit stream the batch intervals refer
// to: at 200,000 transactions/s, a batch interval of 0.5, 2 and 10 ms makes
// segments of 100, 400 and 2,000 transactions.
const streamTxnsPerSec = 200_000

// BenchmarkDiskLog appends segments of the size a batch interval produces,
// with several Appends in flight as the pipeline keeps them, on the real
// file system of b.TempDir (fsyncs are real). It reports transactions/s,
// fsyncs/s (file + directory), directory fsyncs per Append and Appends per
// group commit (one write + one fdatasync). One op is one segment.
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench DiskLog -benchtime=2s ./persist/disk/
func BenchmarkDiskLog(b *testing.B) {
	for _, interval := range []time.Duration{500 * time.Microsecond, 2 * time.Millisecond, 10 * time.Millisecond} {
		batch := int(streamTxnsPerSec * interval.Seconds())
		for _, inflight := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("interval=%v/txns=%d/inflight=%d", interval, batch, inflight), func(b *testing.B) {
				benchDiskLog(b, batch, inflight)
			})
		}
	}
}

func benchDiskLog(b *testing.B, batch, inflight int) {
	ctx := context.Background()
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Recover(ctx); err != nil {
		b.Fatal(err)
	}
	if err := l.Append(ctx, persist.EncodeSegment(nil, []byte("bench"), nil)); err != nil {
		b.Fatal(err)
	}
	template := make([]tx.Transaction, batch)
	for i := range template {
		template[i] = tx.Transaction{
			RequestID:         fmt.Appendf(nil, "%036d", i),
			TimestampUnixNano: 1_780_000_000_000_000_000 + int64(i)*5000,
			Operations:        []tx.Operation{{Type: tx.OpWrite, Key: fmt.Appendf(nil, "key-%012d", i), Value: make([]byte, 100)}},
		}
	}
	before := l.Stats()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			txns := append([]tx.Transaction(nil), template...)
			var buf []byte
			for {
				k := next.Add(1) - 1
				if k >= int64(b.N) {
					return
				}
				first := tx.Version(k)*tx.Version(batch) + 1
				for i := range txns {
					txns[i].Version = first + tx.Version(i)
				}
				buf = persist.EncodeSegment(buf[:0], []byte("bench"), txns)
				if err := l.Append(ctx, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	st := l.Stats()
	syncs := float64(st.FileSyncs - before.FileSyncs + st.DirSyncs - before.DirSyncs)
	b.ReportMetric(float64(b.N*batch)/elapsed, "txns/s")
	b.ReportMetric(syncs/elapsed, "fsyncs/s")
	b.ReportMetric(float64(st.DirSyncs-before.DirSyncs)/float64(b.N), "dirsyncs/append")
	if g := st.GroupCommits - before.GroupCommits; g > 0 {
		b.ReportMetric(float64(b.N)/float64(g), "appends/groupcommit")
	}
}
