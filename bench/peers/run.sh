#!/usr/bin/env bash
# Peer comparison of issue 8: WeaselDB (disk backend) vs an embedded etcd vs
# Redis (appendfsync always), the same optimistic transaction at 1, 16 and
# 64 connections over uniform and zipf keys, back to back on the same disk.
# Prints commits/s, p50/p99 per peer and WeaselDB's ratios; the JSON of
# every run lands in bench/out/peers-<date>.json.
# Usage: bench/peers/run.sh [benchpeers flags...]   e.g. -duration 5s -peers weaseldb,redis
# Each measured run holds flock /tmp/weaseldb-bench.lock (one load at a time).
# On a shared machine run it three times and quote the per-cell medians:
#   bin/benchdbpeers -merge bench/out/peers-A.json,bench/out/peers-B.json,bench/out/peers-C.json
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x bin/weaseldb ] || make build
go build -o bin/loadgen ./loadgen
if ! command -v redis-server >/dev/null; then
	echo "redis-server missing: installing Debian's" >&2
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >/dev/null
	else
		sudo DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >/dev/null
	fi
fi
# Debian's package may start a system instance on 6379; this run starts its
# own on a free port and never touches that one.
(cd bench/peers && go build -o ../../bin/benchdbpeers .)
mkdir -p bench/out
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%FT%TZ)"
echo "redis: $(redis-server --version | cut -d' ' -f3), weaseldb: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
exec bin/benchdbpeers -json "bench/out/peers-$(date +%Y%m%d-%H%M%S).json" "$@"
