#!/usr/bin/env bash
# Runs the whole suite. Without STARPIPE_TEST_DATABASE_URL it starts a private
# PostgreSQL cluster (as an unprivileged user when run as root), points the
# tests at it and stops it on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=bin/starpipe

# The shared scanner corpus (see internal/corpus), as an absolute path; a
# relative STARPIPE_CORPUS is taken from the module root, as the tests do.
corpus=${STARPIPE_CORPUS:-../shared/corpus}
case $corpus in /*) ;; *) corpus=$PWD/$corpus ;; esac
export STARPIPE_CORPUS=$corpus
if [ ! -f "$STARPIPE_CORPUS/MANIFEST.csv" ]; then
	if [ "${CI:-}" = true ]; then
		echo "no shared scanner corpus at $STARPIPE_CORPUS: set STARPIPE_CORPUS (CI runs every test)" >&2
		exit 1
	fi
	echo "==> no shared scanner corpus at $STARPIPE_CORPUS: the tests that read it are skipped (set STARPIPE_CORPUS)" >&2
fi
# Tests that scan run this scanner (built by `make build`) in a child
# process; without it each test process builds one with `go build`.
if [ -z "${STARPIPE_SCANNER_BIN:-}" ] && [ -x bin/starpipe-scanner ]; then
	export STARPIPE_SCANNER_BIN="$PWD/bin/starpipe-scanner"
fi
TESTDB_DIR=${TESTDB_DIR:-$PWD/.starpipe-test/postgres}

if [ -z "${STARPIPE_TEST_DATABASE_URL:-}" ]; then
	echo "==> starting private PostgreSQL in $TESTDB_DIR"
	url=$("$BIN" testdb start --dir "$TESTDB_DIR")
	trap '"$BIN" testdb stop --dir "$TESTDB_DIR" || true' EXIT
	export STARPIPE_TEST_DATABASE_URL="$url"
fi

echo "==> no tracked file over 5 MB"
./scripts/check-file-sizes.sh

echo "==> go test ./..."
go test -count=1 -timeout 25m ${GOTESTFLAGS:-} ./...

# The race detector over the concurrent parts (consumer, relay, scheduler,
# API). The scanner packages are left out: nuclei and amass under -race
# take longer to build than the rest of the suite takes to run.
echo "==> go test -race (concurrent packages)"
go test -race -count=1 -timeout 15m ./bus/ ./relay/ ./scheduler/... ./api/ ./ingest/pipeline/ ./mapping/ ./config/ ./vault/
