#!/usr/bin/env bash
# Runs the persist.Log conformance suite of the S3 backend (TestS3Compat in
# persist/s3log), then the failover suite (tests/failover, real binaries),
# against versitygw, an independent S3 implementation (Apache-2.0), on
# loopback. This is what shows persist/s3log works against
# real S3 semantics and strict SigV4 checks, not only against our fake.
#
# Usage: scripts/s3compat.sh
#   VERSITYGW=/path/to/versitygw   use that binary instead of the cached build
#   S3COMPAT_CACHE=DIR             cache directory (default ~/.cache/weaseldb)
#
# The binary is built once with `go install` from the module proxy (about
# five minutes on a loaded 2-core machine) into the cache and reused while
# it is the pinned version. Exits with the status of go test.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v1.8.0
module=github.com/versity/versitygw
cache=${S3COMPAT_CACHE:-$HOME/.cache/weaseldb}
bin=${VERSITYGW:-$cache/bin/versitygw}

# is_pinned BIN: the binary was built from the pinned module version (read
# from its embedded build info, so a stale cache is rebuilt, not trusted).
is_pinned() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+$module[[:space:]]+$version([[:space:]]|$)"
}

if [ -z "${VERSITYGW:-}" ]; then
	mkdir -p "$cache/bin"
	# One build at a time, even when several checkouts run this at once.
	exec 9>"$cache/versitygw.lock"
	flock 9
	if ! is_pinned "$bin"; then
		echo "s3compat: building $module@$version into $cache/bin (takes minutes, once)"
		start=$(date +%s)
		# Outside the module: the build uses versitygw's own go.mod, not ours.
		(cd / && GOBIN="$cache/bin" GOFLAGS=-buildvcs=false go install "$module/cmd/versitygw@$version")
		echo "s3compat: built in $(($(date +%s) - start))s"
	fi
	flock -u 9
fi
[ -x "$bin" ] || { echo "s3compat: no versitygw binary at $bin" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/weaseldb-s3compat.XXXXXX")
bucket=weasel-s3compat
mkdir -p "$dir/data/$bucket"
access=test
secret=testsecret
gw_pid=
cleanup() {
	if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
		kill "$gw_pid" 2>/dev/null || true
		wait "$gw_pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: bind port 0 and release it. Another process may
# take it in between; then versitygw fails to start and we retry.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port=
for attempt in 1 2 3; do
	port=$(free_port)
	"$bin" --access "$access" --secret "$secret" --port "127.0.0.1:$port" posix "$dir/data" >"$dir/versitygw.log" 2>&1 &
	gw_pid=$!
	# Up when it answers HTTP at all (an unsigned request gets 403).
	up=
	for _ in $(seq 1 150); do
		if ! kill -0 "$gw_pid" 2>/dev/null; then
			break
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/" || true)
		if [ -n "$code" ] && [ "$code" != 000 ]; then
			up=1
			break
		fi
		sleep 0.2
	done
	if [ -n "$up" ]; then
		break
	fi
	echo "s3compat: versitygw did not come up on port $port (attempt $attempt):" >&2
	cat "$dir/versitygw.log" >&2
	kill "$gw_pid" 2>/dev/null || true
	wait "$gw_pid" 2>/dev/null || true
	gw_pid=
done
if [ -z "$gw_pid" ]; then
	echo "s3compat: could not start versitygw" >&2
	exit 1
fi
echo "s3compat: versitygw $version (pid $gw_pid) on 127.0.0.1:$port, data in $dir/data"

status=0
WEASELDB_S3COMPAT_ENDPOINT="http://127.0.0.1:$port" \
	WEASELDB_S3COMPAT_BUCKET="$bucket" \
	WEASELDB_S3COMPAT_ACCESS="$access" \
	WEASELDB_S3COMPAT_SECRET="$secret" \
	go test -count=1 -timeout 15m -run S3Compat -v ./persist/s3log/ || status=$?
# Replicas and failover with real binaries on the same service: the lease's
# conditional writes, following the log, takeover after SIGKILL and SIGSTOP.
if [ "$status" -eq 0 ]; then
	WEASELDB_S3COMPAT_ENDPOINT="http://127.0.0.1:$port" \
		WEASELDB_S3COMPAT_BUCKET="$bucket" \
		WEASELDB_S3COMPAT_ACCESS="$access" \
		WEASELDB_S3COMPAT_SECRET="$secret" \
		go test -count=1 -timeout 10m -v ./tests/failover/ || status=$?
fi
if [ "$status" -ne 0 ]; then
	echo "s3compat: FAILED; versitygw log:" >&2
	tail -n 50 "$dir/versitygw.log" >&2
fi
exit "$status"
