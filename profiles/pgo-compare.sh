#!/usr/bin/env bash
# The gain of PGO on the standard scenarios: bin/weaseldb built with
# -pgo=off and with -pgo=profiles/default.pgo, driven alternately (off, pgo,
# pgo, off, ...) so that drift of a shared machine hits both alike.
# Prints one line per run and the median ok/s and p99 of each build.
# Usage: profiles/pgo-compare.sh [RUNS] [DURATION] [SCENARIOS]
#        (default 3 runs of 10s of "standard pipelined")
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
scenarios=${3:-standard pipelined}
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
		# Swap the order every round so neither build always runs second.
		order="off on"
		[ $((i % 2)) -eq 0 ] && order="on off"
		for build in $order; do
			flock /tmp/weaseldb-bench.lock bin/loadgen --spawn --weaseldb "bin/weaseldb-pgo-$build" \
				--duration "$duration" --warmup 2s --quiet --json --metrics-filter commit,process_cpu "$@" >"$out/$name-$build-$i.json" 2>"$out/$name-$build-$i.log" ||
				{ cat "$out/$name-$build-$i.log" >&2; exit 1; }
			python3 - "$out/$name-$build-$i.json" "$name" "$build" "$i" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["run"]
# Server CPU per committed transaction over the same scrape window: less
# sensitive to a noisy neighbour than throughput, which is what PGO changes.
series = d["server"]["series"]
cpu = series["process_cpu_seconds_total"]["delta"]
commits = sum(v["delta"] for k, v in series.items() if k.startswith("weaseldb_commit_latency_seconds_count"))
us = cpu / commits * 1e6 if commits else 0
print(f"{sys.argv[2]:<10} pgo={sys.argv[3]:<3} run {sys.argv[4]}: {r['ok_per_sec']:9.0f} ok/s  p50 {r['latency']['p50_ms']:7.3f} ms  p99 {r['latency']['p99_ms']:7.3f} ms  server CPU {us:6.1f} us/commit")
PY
		done
	done
	python3 - "$out" "$name" <<'PY'
import glob, json, statistics, sys
d, name = sys.argv[1], sys.argv[2]
def cpu_us(doc):
    series = doc["server"]["series"]
    commits = sum(v["delta"] for k, v in series.items() if k.startswith("weaseldb_commit_latency_seconds_count"))
    return series["process_cpu_seconds_total"]["delta"] / commits * 1e6 if commits else 0
med = {}
for b in ("off", "on"):
    docs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/{name}-{b}-*.json"))]
    med[b] = (statistics.median(x["run"]["ok_per_sec"] for x in docs),
              statistics.median(x["run"]["latency"]["p99_ms"] for x in docs),
              statistics.median(cpu_us(x) for x in docs))
print(f"{name}: median ok/s off {med['off'][0]:.0f}, pgo {med['on'][0]:.0f} (x{med['on'][0]/med['off'][0]:.3f}); "
      f"median p99 off {med['off'][1]:.3f} ms, pgo {med['on'][1]:.3f} ms (x{med['on'][1]/med['off'][1]:.3f}); "
      f"median server CPU/commit off {med['off'][2]:.1f} us, pgo {med['on'][2]:.1f} us (x{med['on'][2]/med['off'][2]:.3f})")
PY
}
for s in $scenarios; do
	case $s in
	standard) scenario standard --connections 64 --pipeline 1 --point-reads 1 --writes 1 --dist uniform ;;
	pipelined) scenario pipelined --connections 64 --pipeline 16 --point-reads 1 --writes 1 --dist uniform ;;
	*) echo "unknown scenario $s (standard, pipelined)" >&2; exit 2 ;;
	esac
done
