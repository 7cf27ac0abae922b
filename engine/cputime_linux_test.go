package engine

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPU measures the CPU time the benchmark's own thread spends, so
// that figures taken on a loaded machine count this benchmark's work and
// not the time it waited for a core. Start it after b.ResetTimer; stop
// reports cpu-ns/op next to the wall-clock ns/op.
type threadCPU struct{ start int64 }

func startThreadCPU() threadCPU {
	runtime.LockOSThread()
	return threadCPU{start: threadNanos()}
}

func (c threadCPU) stop(b *testing.B) {
	used := threadNanos() - c.start
	runtime.UnlockOSThread()
	b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/op")
}

func threadNanos() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
