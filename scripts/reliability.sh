#!/usr/bin/env bash
# Long forms of the reliability suites (the short forms run in `go test ./...`).
# Usage: scripts/reliability.sh [crash|overload|s3fault|all] (default all)
#   WEASELDB_CRASH_ITERATIONS  crash iterations per backend (default 200)
#   WEASELDB_CRASH_SEED        replay one seed (printed by every run)
#   WEASELDB_S3_OUTAGE         S3 outage length (default 30s here)
#   WEASELDB_TEST_BIN          use this binary instead of building one
# Figures go to bench/results/reliability.md by hand (see that file).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
run() { echo "== $*"; "$@"; }
if [[ $what == crash || $what == all ]]; then
	WEASELDB_CRASH_ITERATIONS=${WEASELDB_CRASH_ITERATIONS:-200} \
		run go test -count=1 -v -timeout 3h -run TestCrash ./tests/crash/
fi
if [[ $what == overload || $what == all ]]; then
	WEASELDB_OVERLOAD_LONG=1 run go test -count=1 -v -timeout 30m ./tests/overload/
fi
if [[ $what == s3fault || $what == all ]]; then
	WEASELDB_S3_OUTAGE=${WEASELDB_S3_OUTAGE:-30s} run go test -count=1 -v -timeout 30m ./tests/s3fault/ ./tests/fault/
fi
