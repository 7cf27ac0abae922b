package config

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MachineMemoryBytes returns the memory this process may use: the
// machine's RAM, or the cgroup (v2) memory limit when that is lower. Memory
// bounds whose defaults are "sized to the machine" derive from it. 0 when
// it cannot be told (then those defaults take their floor).
func MachineMemoryBytes() int64 {
	var info unix.Sysinfo_t
	var total int64
	if err := unix.Sysinfo(&info); err == nil {
		total = int64(info.Totalram) * int64(info.Unit)
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if limit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && limit > 0 && (total == 0 || limit < total) {
			total = limit
		}
	}
	return total
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
