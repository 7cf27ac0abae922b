package s3log

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/tx"
)

// BenchmarkS3Log measures Append against the fake S3 (net/http on
// loopback, in memory) with 20 ms added to every PUT, as S3 costs:
// transactions/s, PUTs/s and latency to durable (Append call to return).
//
// Segments hold 1000 transactions of one 16-byte-key, 100-byte-value write
// each: what the pipeline gathers in a 5 ms batch interval at 200,000
// transactions/s. "closed" keeps MaxInFlight Appends outstanding all the
// time (the ceiling: MaxInFlight / 20 ms PUTs/s); "paced" issues one
// segment every 5 ms, as the pipeline does at that load, to show the
// target (200,000 txns/s at ≤ 200 PUTs/s) is held with latency near one
// PUT. One op is one segment.
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench BenchmarkS3Log -benchtime 100x ./persist/s3log/
func BenchmarkS3Log(b *testing.B) {
	const (
		putLatency    = 20 * time.Millisecond
		txnsPerSeg    = 1000
		batchInterval = 5 * time.Millisecond
	)
	for _, mode := range []string{"closed", "paced"} {
		for _, inFlight := range []int{1, 4, 16} {
			if mode == "paced" && inFlight == 1 {
				continue // cannot keep up with one PUT per 5 ms at 20 ms each
			}
			b.Run(fmt.Sprintf("%s/inflight=%d", mode, inFlight), func(b *testing.B) {
				f := startFake(b)
				f.srv.Faults().Set(fakes3.Fault{Latency: putLatency}, fakes3.OpPutObject)
				cfg := testConfig(f.url)
				cfg.MaxInFlight = inFlight
				l := openLog(b, cfg)
				defer l.Close()
				ctx := context.Background()
				if _, err := l.Recover(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Append(ctx, persist.EncodeSegment(nil, []byte("bench"), nil)); err != nil {
					b.Fatal(err)
				}
				txns := benchTxns(txnsPerSeg)
				var (
					mu        sync.Mutex
					latencies []time.Duration
					wg        sync.WaitGroup
				)
				slots := make(chan struct{}, inFlight)
				var tick *time.Ticker
				if mode == "paced" {
					tick = time.NewTicker(batchInterval)
					defer tick.Stop()
				}
				next := tx.Version(1)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if tick != nil {
						<-tick.C
					}
					for i := range txns {
						txns[i].Version = next + tx.Version(i)
					}
					seg := persist.EncodeSegment(nil, []byte("bench"), txns)
					next += txnsPerSeg
					slots <- struct{}{}
					wg.Go(func() {
						t0 := time.Now()
						err := l.Append(ctx, seg)
						d := time.Since(t0)
						<-slots
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						latencies = append(latencies, d)
						mu.Unlock()
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				slices.Sort(latencies)
				b.ReportMetric(float64(b.N*txnsPerSeg)/elapsed.Seconds(), "txns/s")
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "PUTs/s")
				if len(latencies) > 0 {
					b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
				}
			})
		}
	}
}

func benchTxns(n int) []tx.Transaction {
	txns := make([]tx.Transaction, n)
	value := make([]byte, 100)
	for i := range txns {
		txns[i] = tx.Transaction{
			RequestID:         fmt.Appendf(nil, "req-%012d", i),
			TimestampUnixNano: 1_780_000_000_000_000_000,
			Operations:        []tx.Operation{{Type: tx.OpWrite, Key: fmt.Appendf(nil, "key-%012d", i), Value: value}},
		}
	}
	return txns
}
