package arena

import (
	"sync"
	"testing"
)

// The arena benchmarks simulate one request's worth of allocations: the
// keys and values of a medium commit (20 keys of 16 bytes and 10 values of
// 100 bytes) copied out of a read buffer, then the request ends. Baselines:
// make([]byte, n) per slice (what naive code does) and a sync.Pool of
// per-request buffers carved by append.
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench . -benchtime=200ms -count=3 ./arena/

var (
	benchKey   = make([]byte, 16)
	benchValue = make([]byte, 100)
	sink       []byte
)

func BenchmarkRequest(b *testing.B) {
	b.Run("arena", func(b *testing.B) {
		a := New(DefaultChunkBytes)
		b.ReportAllocs()
		for b.Loop() {
			for i := 0; i < 10; i++ {
				sink = a.Copy(benchKey)
				sink = a.Copy(benchKey)
				sink = a.Copy(benchValue)
			}
			a.Reset()
		}
	})
	b.Run("make", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := 0; i < 10; i++ {
				sink = append(make([]byte, 0, len(benchKey)), benchKey...)
				sink = append(make([]byte, 0, len(benchKey)), benchKey...)
				sink = append(make([]byte, 0, len(benchValue)), benchValue...)
			}
		}
	})
	b.Run("sync.Pool", func(b *testing.B) {
		pool := sync.Pool{New: func() any { buf := make([]byte, 0, DefaultChunkBytes); return &buf }}
		copyInto := func(buf *[]byte, src []byte) []byte {
			start := len(*buf)
			*buf = append(*buf, src...)
			return (*buf)[start:len(*buf):len(*buf)]
		}
		b.ReportAllocs()
		for b.Loop() {
			buf := pool.Get().(*[]byte)
			for i := 0; i < 10; i++ {
				sink = copyInto(buf, benchKey)
				sink = copyInto(buf, benchKey)
				sink = copyInto(buf, benchValue)
			}
			*buf = (*buf)[:0]
			pool.Put(buf)
		}
	})
}
