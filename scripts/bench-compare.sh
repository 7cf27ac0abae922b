#!/usr/bin/env bash
# Usage: scripts/bench-compare.sh BASE_REF [PACKAGES...]
# Runs the microbenchmarks at BASE_REF (in a temporary worktree) and in the
# work tree, one after the other under the bench lock, and prints benchstat.
set -euo pipefail
base=${1:?usage: make bench-compare BASE=<git ref>}
shift || true
pkgs=${*:-./...}
cd "$(dirname "$0")/.."
out=bench/out/compare-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
wt=$(mktemp -d)
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$wt" "$base" >/dev/null
command -v benchstat >/dev/null || GOBIN="$(go env GOPATH)/bin" go install golang.org/x/perf/cmd/benchstat@latest
export PATH="$PATH:$(go env GOPATH)/bin"
run() { (cd "$1" && flock /tmp/weaseldb-bench.lock go test -run '^$' -bench . -benchmem -count=5 $pkgs) > "$2"; }
run "$wt" "$out/base.txt"
run . "$out/head.txt"
benchstat "$out/base.txt" "$out/head.txt" | tee "$out/benchstat.txt"
