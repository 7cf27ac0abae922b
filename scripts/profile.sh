#!/usr/bin/env bash
# make profile: profiles of the server under the standard load, saved into
# profiles/ (small; committed), plus profiles/top.txt (the top entries of
# each) and profiles/default.pgo (the merged CPU profile `make build` uses
# for profile-guided optimisation).
#
#   standard: disk backend, 64 connections x 1 in flight, 1 point read +
#             1 write, uniform keys (bench scenario 1): cpu, heap, allocs,
#             mutex, block.
#   pipelined: the same with 16 requests in flight per connection: cpu
#             only, merged with the first into default.pgo so that PGO also
#             sees the batched hot path.
#
# Usage: scripts/profile.sh [SECONDS]   (CPU seconds per scenario, default 15)
# The server enables mutex and block profiling itself when its admin
# listener is on (cmd/weaseldb/serve.go startAdmin). The whole run holds
# flock /tmp/weaseldb-bench.lock: one load at a time on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
out=profiles
mkdir -p "$out"
[ -x bin/weaseldb ] || make build
go build -o bin/loadgen ./loadgen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d /tmp/weaseldb-profile-XXXXXX)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$data"
}
trap cleanup EXIT

start_server() { # data subdir
	port=$(free_port)
	admin=$(free_port)
	bin/weaseldb --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
		--data-dir "$data/$1" --persist disk >"$data/$1.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "server did not become ready; log:" >&2
	cat "$data/$1.log" >&2
	exit 1
}
stop_server() {
	kill -TERM "$server_pid"
	wait "$server_pid" || { echo "server exited non-zero; log:" >&2; cat "$data"/*.log >&2; exit 1; }
	server_pid=
}
fetch() { # endpoint file
	curl -fsS -o "$2" "http://127.0.0.1:$admin/debug/pprof/$1"
}

# load SCENARIO-FLAGS...: warm-up 2 s, then SECONDS+3 measured, so the CPU
# profile (taken from second 2 on) sees load only.
load() {
	bin/loadgen --addr "127.0.0.1:$port" --quiet --warmup 2s --duration "$((seconds + 3))s" \
		--point-reads 1 --writes 1 --dist uniform "$@" >"$data/loadgen.txt" 2>&1 &
	load_pid=$!
	sleep 2.5
}

exec 9>/tmp/weaseldb-bench.lock
flock 9
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== standard scenario: 64 connections x 1, ${seconds}s CPU profile"
start_server standard
fetch "allocs" "$data/allocs-before.prof" # allocs is cumulative: subtract the start-up
load --connections 64 --pipeline 1
fetch "profile?seconds=$seconds" "$out/cpu.prof"
wait "$load_pid" || { cat "$data/loadgen.txt" >&2; exit 1; }
grep -E '^ +(ok \(200\)|latency ms)' "$data/loadgen.txt" || true
fetch "heap" "$out/heap.prof"
fetch "allocs" "$out/allocs.prof"
fetch "mutex" "$out/mutex.prof"
fetch "block" "$out/block.prof"
stop_server

echo "== pipelined scenario: 64 connections x 16, ${seconds}s CPU profile (for PGO)"
start_server pipelined
load --connections 64 --pipeline 16
fetch "profile?seconds=$seconds" "$out/cpu-pipelined.prof"
wait "$load_pid" || { cat "$data/loadgen.txt" >&2; exit 1; }
grep -E '^ +(ok \(200\)|latency ms)' "$data/loadgen.txt" || true
stop_server
flock -u 9

# The PGO profile: both CPU profiles merged (pprof sums their samples).
go tool pprof -proto "$out/cpu.prof" "$out/cpu-pipelined.prof" >"$out/default.pgo" 2>/dev/null

{
	echo "# top entries, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null), machine shared: $(cut -d' ' -f1-3 /proc/loadavg)"
	for p in cpu cpu-pipelined; do
		echo; echo "## $p (flat)"; go tool pprof -top -nodecount=25 "$out/$p.prof" 2>/dev/null | sed 1,4d
		echo; echo "## $p (cumulative)"; go tool pprof -top -cum -nodecount=25 "$out/$p.prof" 2>/dev/null | sed 1,4d
	done
	echo; echo "## heap (inuse_space)"; go tool pprof -top -sample_index=inuse_space -nodecount=15 "$out/heap.prof" 2>/dev/null | sed 1,4d
	echo; echo "## allocs during the load (alloc_space, start-up subtracted)"
	go tool pprof -top -sample_index=alloc_space -nodecount=20 -diff_base "$data/allocs-before.prof" "$out/allocs.prof" 2>/dev/null | sed 1,4d
	echo; echo "## allocs during the load (alloc_objects, start-up subtracted)"
	go tool pprof -top -sample_index=alloc_objects -nodecount=20 -diff_base "$data/allocs-before.prof" "$out/allocs.prof" 2>/dev/null | sed 1,4d
	echo; echo "## mutex (delay)"; go tool pprof -top -nodecount=15 "$out/mutex.prof" 2>/dev/null | sed 1,4d
	echo; echo "## block (delay)"; go tool pprof -top -nodecount=15 "$out/block.prof" 2>/dev/null | sed 1,4d
} >"$out/top.txt"
cp "$data/allocs-before.prof" "$out/allocs-startup.prof"
ls -la "$out"
echo "profiles in $out/ (top entries: $out/top.txt; PGO profile: $out/default.pgo)"
