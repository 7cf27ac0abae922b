#!/usr/bin/env bash
# The five standard loadgen scenarios of issue 8, one after another, each
# against a freshly spawned server and printed beside its target
# (bench/targets.toml). JSON summaries land in bench/out/e2e-<date>/.
# Usage: bench/e2e.sh [DURATION]   (default 10s measured per scenario)
# Exit status: the number of scenarios that missed a target (0 = all met).
set -uo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
out="bench/out/e2e-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
[ -x bin/weaseldb ] || make build
go build -o bin/loadgen ./loadgen || exit 1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%FT%TZ)"
missed=0
run() { # scenario [extra loadgen flags...]
	local name=$1
	shift
	echo "=== $name: $(grep -A1 "^\[scenario.$name\]" bench/targets.toml | sed -n 's/^description = "\(.*\)"/\1/p')"
	# One load at a time on this machine (shared with microbenchmarks).
	if ! flock /tmp/weaseldb-bench.lock bin/loadgen --targets bench/targets.toml --scenario "$name" \
		--duration "$duration" --quiet --json "$@" >"$out/$name.json"; then
		missed=$((missed + 1))
	fi
}
run disk-uniform
run disk-zipf
run fakes3-20ms
run subscribers-100 --baseline "$out/disk-uniform.json"
run large-txn
run disk-pipelined
run disk-open-half
echo "e2e: $missed scenario(s) missed a target; summaries in $out"
exit "$missed"
