#!/usr/bin/env bash
# HTTP server comparison: the same two endpoints (GET /hello, 13 bytes; POST
# /echo, 300 bytes echoed) on netpoll and net/http (and, when
# bench/http/peers is built, fasthttp and gnet), each driven by wrk with 64
# keep-alive connections, one after the other. Prints requests/s, p99 and the
# ratio against net/http.
#
# Usage: bench/http/run.sh [DURATION]     (default 10s per run)
# Holds /tmp/weaseldb-bench.lock so that no other benchmark runs meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10s}
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null || { echo "wrk missing"; exit 1; }; }
mkdir -p bin
go build -o bin/benchhttp ./bench/http
servers=(netpoll nethttp)
if [ -d bench/http/peers ] && (cd bench/http/peers && go build -o ../../../bin/benchpeers . 2>/dev/null); then
	servers+=(fasthttp gnet)
fi
exec 9>/tmp/weaseldb-bench.lock
flock 9
port=18091
declare -A rps p99
for s in "${servers[@]}"; do
	port=$((port + 1))
	case $s in
	netpoll | nethttp) bin/benchhttp -server="$s" -addr=127.0.0.1:$port >/dev/null & ;;
	*) bin/benchpeers -server="$s" -addr=127.0.0.1:$port >/dev/null & ;;
	esac
	pid=$!
	for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
	for kind in GET POST; do
		if [ $kind = GET ]; then
			out=$(wrk -t2 -c64 -d"$duration" --latency http://127.0.0.1:$port/hello)
		else
			out=$(wrk -t2 -c64 -d"$duration" --latency -s bench/http/post.lua http://127.0.0.1:$port/echo)
		fi
		rps[$s,$kind]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
		p99[$s,$kind]=$(echo "$out" | awk '$1 == "99%" {print $2}')
		if echo "$out" | grep -q "Non-2xx"; then echo "$s $kind: non-2xx answers!"; fi
	done
	kill "$pid"
	wait "$pid" 2>/dev/null || true
done
echo "# $(date -u +%Y-%m-%dT%H:%MZ)  nproc=$(nproc)  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  wrk -t2 -c64 -d$duration"
printf "%-10s %-5s %12s %10s %10s\n" server kind "req/s" p99 "vs net/http"
for s in "${servers[@]}"; do
	for kind in GET POST; do
		ratio=$(awk -v a="${rps[$s,$kind]}" -v b="${rps[nethttp,$kind]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b }')
		printf "%-10s %-5s %12s %10s %10s\n" "$s" "$kind" "${rps[$s,$kind]}" "${p99[$s,$kind]}" "$ratio"
	done
done
