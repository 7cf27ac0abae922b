# WeaselDB — see README.md. `make test` is exactly what CI runs.
GO       ?= go
BIN      := bin
PGO      := $(wildcard profiles/default.pgo)
PGOFLAG  := $(if $(PGO),-pgo=$(PGO),-pgo=off)
FUZZTIME ?= 10s
# The VCS revision for --version and weaseldb_build_info, in case the
# toolchain stamps none (GOFLAGS=-buildvcs=false, git worktrees).
REVISION := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)
LDFLAGS  := -X main.revision=$(REVISION)

# make sim SEEDS=N [STEPS=M]: the simulator (engine/sim) over more seeds than
# make test's budget, with invariants on. A failure prints its replay command.
SEEDS ?= 2000
STEPS ?= 400

.PHONY: sim build run test test-go test-race test-python test-smoke fuzz bench bench-compare bench-e2e bench-peers loadgen profile crash crash-power test-s3compat lint clean

build:
	@mkdir -p $(BIN)
	$(GO) build $(PGOFLAG) -ldflags '$(LDFLAGS)' -o $(BIN)/weaseldb ./cmd/weaseldb
	$(GO) build -o $(BIN)/loadgen ./loadgen

run: build
	$(BIN)/weaseldb

# Everything CI runs.
test: build lint test-go test-race fuzz test-python test-smoke

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-go:
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -tags plantbugs -count=1 -run TestPlantedBugsCaught ./engine/sim/

# The race run also checks invariants (internal/invariants): assertions at
# the engine's stage boundaries and in the conflict set, off in release builds.
test-race:
	$(GO) test -race -tags invariants -count=1 -timeout 20m -short ./...

# Each fuzz target runs briefly; crashers land in testdata/fuzz and become regression tests.
fuzz:
	@./scripts/fuzz-all.sh $(FUZZTIME)

test-python:
	@if [ -d python/tests ]; then cd python && python3 -m unittest discover -s tests -t . -v; else echo "python: no tests yet"; fi

# A few seconds of real load through loadgen --spawn: it must work; its
# numbers are not asserted.
test-smoke: build
	$(BIN)/loadgen --weaseldb $(BIN)/weaseldb --targets bench/targets.toml --scenario smoke

# Every microbenchmark, -count=5, saved benchstat-readable in bench/out/.
bench:
	@mkdir -p bench/out
	$(GO) test -run '^$$' -bench . -benchmem -count=5 ./... | tee bench/out/bench-$$(git rev-parse --short HEAD).txt

# make bench-compare BASE=<git ref>: benchstat between BASE and the work tree.
bench-compare:
	@./scripts/bench-compare.sh $(BASE)

sim:
	SIM_SEEDS=$(SEEDS) SIM_STEPS=$(STEPS) $(GO) test -tags invariants -count=1 -timeout 60m -run 'TestSim$$' ./engine/sim/

bench-e2e: build
	bench/e2e.sh

bench-peers: build
	bench/peers/run.sh

# A standard load run against a spawned server (disk backend, 64 connections).
loadgen: build
	$(BIN)/loadgen --weaseldb $(BIN)/weaseldb --spawn --connections 64 --duration 10s

profile: build
	./scripts/profile.sh

# The long crash-safety run (the short form is part of make test).
crash:
	WEASELDB_CRASH_ITERATIONS=$${ITERATIONS:-200} $(GO) test -count=1 -timeout 2h -run TestCrash -v ./tests/crash/

# The long power-loss run on a lazyfs FUSE mount (needs root and /dev/fuse;
# the short form, 20 cuts per backend, is part of make test). CUTS per
# backend; SEED=n replays a run.
crash-power:
	WEASELDB_POWERLOSS_CUTS=$${CUTS:-1000} $(if $(SEED),WEASELDB_POWERLOSS_SEED=$(SEED)) $(GO) test -count=1 -timeout 24h -run '^TestPowerLoss$$' -v ./tests/powerloss/

# The S3 backend's conformance suite against versitygw, an independent S3
# server built once into ~/.cache/weaseldb/bin (minutes the first time).
test-s3compat:
	./scripts/s3compat.sh

clean:
	rm -rf $(BIN) bench/out
