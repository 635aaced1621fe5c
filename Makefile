# starpipe: `make run` starts the daemon on the embedded stack, `make test`
# runs the whole suite against a private PostgreSQL and the in-process broker.

GO       ?= go
BIN      := bin/starpipe
SCANNER  := bin/starpipe-scanner
STATE    ?= .starpipe
LISTEN   ?= 127.0.0.1:8080
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BENCHTIME ?= 1s

# The shared corpus of real scanner outputs (see internal/corpus): beside the
# clone unless STARPIPE_CORPUS says otherwise; always passed on as an
# absolute path so that every test package finds the same directory.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
STARPIPE_CORPUS ?= $(abspath $(ROOT)/../shared/corpus)
export STARPIPE_CORPUS := $(abspath $(STARPIPE_CORPUS))

.PHONY: all deps build run test bench lint fuzz clean

all: lint test

# PostgreSQL server binaries, gcc and git; installed with apt-get as root.
deps:
	@./scripts/ensure-deps.sh

# The daemon and the scanner program it starts for every scan (the only
# program that links nuclei and amass); the daemon finds it next to itself.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/starpipe
	$(GO) build -ldflags "$(LDFLAGS)" -o $(SCANNER) ./cmd/starpipe-scanner

# The daemon with its private PostgreSQL and embedded broker; state (and so
# data) lives in $(STATE) and survives restarts. Ctrl-C stops everything.
run: deps build
	./$(BIN) dev --state $(STATE) --listen $(LISTEN)

# Starts a private PostgreSQL unless STARPIPE_TEST_DATABASE_URL points at one,
# runs every test, and stops the cluster again.
test: deps build
	STARPIPE_BIN=$(abspath $(BIN)) STARPIPE_SCANNER_BIN=$(abspath $(SCANNER)) ./scripts/test.sh

# BENCH_MEMORY=1 adds the daemon's peak memory with a 1 GB SARIF (slow).
bench: build
	STARPIPE_SCANNER_BIN=$(abspath $(SCANNER)) BENCHTIME=$(BENCHTIME) ./scripts/bench.sh

lint:
	@./scripts/check-file-sizes.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Short fuzzing pass over every parser (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin .starpipe-test
