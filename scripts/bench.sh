#!/usr/bin/env bash
# Runs every benchmark once with allocation figures. The figures in
# BENCHMARKS.md come from this command on the 2-core reference machine.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=bin/starpipe
TESTDB_DIR=${TESTDB_DIR:-$PWD/.starpipe-test/postgres}
if [ -z "${STARPIPE_TEST_DATABASE_URL:-}" ]; then
	url=$("$BIN" testdb start --dir "$TESTDB_DIR")
	trap '"$BIN" testdb stop --dir "$TESTDB_DIR" || true' EXIT
	export STARPIPE_TEST_DATABASE_URL="$url"
fi
go test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-1s}" ${BENCHPKGS:-./...}

# The daemon's peak memory with a 1 GB SARIF end to end: minutes, so only
# when asked (docs/benchmarks/pipeline.md, "Memory").
if [ -n "${BENCH_MEMORY:-}" ]; then
	./scripts/bench-memory.sh
fi
