# WeaselDB — see README.md. `make test` is exactly what CI runs.
GO       ?= go
BIN      := bin
PGO      := $(wildcard profiles/default.pgo)
PGOFLAG  := $(if $(PGO),-pgo=$(PGO),-pgo=off)
FUZZTIME ?= 10s

.PHONY: build run test test-go test-race test-python fuzz bench bench-compare bench-e2e bench-peers loadgen profile crash test-s3compat lint clean

build:
	@mkdir -p $(BIN)
	$(GO) build $(PGOFLAG) -o $(BIN)/ ./cmd/... 

run: build
	$(BIN)/weaseldb

# Everything CI runs.
test: build lint test-go test-race fuzz test-python

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-go:
	$(GO) test -count=1 -timeout 20m ./...

test-race:
	$(GO) test -race -count=1 -timeout 20m -short ./...

# Each fuzz target runs briefly; crashers land in testdata/fuzz and become regression tests.
fuzz:
	@./scripts/fuzz-all.sh $(FUZZTIME)

test-python:
	@if [ -d python/tests ]; then cd python && python3 -m unittest discover -s tests -t . -v; else echo "python: no tests yet"; fi

bench:
	@mkdir -p bench/out
	$(GO) test -run '^$$' -bench . -benchmem -count=5 ./... | tee bench/out/bench-$$(date +%Y%m%d-%H%M%S).txt

bench-compare:
	@echo "not yet"

bench-e2e:
	@echo "not yet"

bench-peers:
	@echo "not yet"

loadgen:
	@echo "not yet"

profile:
	@echo "not yet"

crash:
	@echo "not yet"

test-s3compat:
	@echo "not yet"

clean:
	rm -rf $(BIN) bench/out
