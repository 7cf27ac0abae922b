// Package benchcpu reports the CPU time a benchmark's own thread spends, so
// that figures taken on a loaded machine count the benchmark's work and not
// the time it waited for a core.
//
//	b.ResetTimer()
//	m := benchcpu.Start()
//	for b.Loop() { ... }
//	m.Stop(b) // reports cpu-ns/op next to the wall-clock ns/op
package benchcpu

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Meter is a running measurement; the goroutine stays locked to its thread
// until Stop.
type Meter struct{ start int64 }

// Start locks the goroutine to its thread and starts measuring.
func Start() Meter {
	runtime.LockOSThread()
	return Meter{start: threadNanos()}
}

// Stop reports the thread's CPU time per b.N as "cpu-ns/op" and unlocks the
// thread.
func (m Meter) Stop(b *testing.B) {
	used := threadNanos() - m.start
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
