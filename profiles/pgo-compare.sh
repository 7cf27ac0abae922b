#!/usr/bin/env bash
# The gain of PGO on the standard scenarios: bin/weaseldb built with
# -pgo=off and with -pgo=profiles/default.pgo, driven alternately (off, pgo,
# off, pgo, ...) so that drift of a shared machine hits both alike.
# Prints one line per run and the median ok/s and p99 of each build.
# Usage: profiles/pgo-compare.sh [RUNS] [DURATION]   (default 3 runs of 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
[ -f profiles/default.pgo ] || { echo "no profiles/default.pgo: run scripts/profile.sh first" >&2; exit 1; }
mkdir -p bin
go build -pgo=off -o bin/weaseldb-pgo-off ./cmd/weaseldb
go build -pgo=profiles/default.pgo -o bin/weaseldb-pgo-on ./cmd/weaseldb
go build -o bin/loadgen ./loadgen
out=$(mktemp -d /tmp/weaseldb-pgo-XXXXXX)
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
scenario() { # name loadgen-flags...
	local name=$1
	shift
	for i in $(seq "$runs"); do
		for build in off on; do
			flock /tmp/weaseldb-bench.lock bin/loadgen --spawn --weaseldb "bin/weaseldb-pgo-$build" \
				--duration "$duration" --warmup 2s --quiet --json "$@" >"$out/$name-$build-$i.json"
			python3 - "$out/$name-$build-$i.json" "$name" "$build" "$i" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["run"]
print(f"{sys.argv[2]:<10} pgo={sys.argv[3]:<3} run {sys.argv[4]}: {r['ok_per_sec']:9.0f} ok/s  p50 {r['latency']['p50_ms']:7.3f} ms  p99 {r['latency']['p99_ms']:7.3f} ms")
PY
		done
	done
	python3 - "$out" "$name" <<'PY'
import glob, json, statistics, sys
d, name = sys.argv[1], sys.argv[2]
med = {}
for b in ("off", "on"):
    rs = [json.load(open(f))["run"] for f in sorted(glob.glob(f"{d}/{name}-{b}-*.json"))]
    med[b] = (statistics.median(r["ok_per_sec"] for r in rs), statistics.median(r["latency"]["p99_ms"] for r in rs))
print(f"{name}: median ok/s off {med['off'][0]:.0f}, pgo {med['on'][0]:.0f} (x{med['on'][0]/med['off'][0]:.3f}); "
      f"median p99 off {med['off'][1]:.3f} ms, pgo {med['on'][1]:.3f} ms (x{med['on'][1]/med['off'][1]:.3f})")
PY
}
scenario standard --connections 64 --pipeline 1 --point-reads 1 --writes 1 --dist uniform
scenario pipelined --connections 64 --pipeline 16 --point-reads 1 --writes 1 --dist uniform
