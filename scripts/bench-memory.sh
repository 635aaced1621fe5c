#!/usr/bin/env bash
# Peak resident memory of the daemon while one large SARIF goes end to end
# (upload, artifact storage, parse, findings stored, run succeeded). The
# figures in docs/benchmarks/pipeline.md ("Memory") come from this script.
#
#   scripts/bench-memory.sh                      # 1 GB SARIF against `starpipe serve`
#   RESULTS=160000 MODE=dev scripts/bench-memory.sh   # ~200 MB against `starpipe dev` (make run)
#   BIN=/tmp/old/bin/starpipe RESULTS=80000 scripts/bench-memory.sh  # another build
#
# MODE=serve (default) runs `starpipe broker` and `starpipe serve` (roles
# api, ingest, relay) as separate processes on a fresh database of the
# test server (STARPIPE_TEST_DATABASE_URL, or one `starpipe testdb` starts),
# so the daemon's figure is the daemon's alone. MODE=dev runs `starpipe
# dev` as `make run` does: the embedded broker is inside the measured
# process, its private PostgreSQL is not. The peak is the kernel's VmHWM of
# the daemon process (/proc/PID/status), read once the run has succeeded.
#
# Slow (a 1 GB file takes minutes): `make bench` runs it only with
# BENCH_MEMORY=1. Files go to a temporary directory that is removed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/starpipe}
CLIENT=${CLIENT:-bin/starpipe} # the uploading client; not measured
MODE=${MODE:-serve}
RESULTS=${RESULTS:-830000} # about 1 GB
TIMEOUT=${TIMEOUT:-60m}
[ -x "$BIN" ] || { echo "bench-memory: $BIN not built (make build)" >&2; exit 1; }
[ -x "$CLIENT" ] || { echo "bench-memory: $CLIENT not built (make build)" >&2; exit 1; }
BIN=$(realpath "$BIN")
CLIENT=$(realpath "$CLIENT")

work=$(mktemp -d "${TMPDIR:-/tmp}/starpipe-bench-memory.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ -n "${dropdb:-}" ]; then
		psql -q "$STARPIPE_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $dropdb WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	if [ -n "${testdb_dir:-}" ]; then
		bin/starpipe testdb stop --dir "$testdb_dir" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hwm() { awk '/^VmHWM:/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

echo "bench-memory: generating a SARIF of $RESULTS results" >&2
go run ./ingest/sarif/internal/measure1g -results "$RESULTS" -out "$work/upload.sarif"
size=$(stat -c %s "$work/upload.sarif")

listen=127.0.0.1:$(freeport)
case "$MODE" in
serve)
	if [ -z "${STARPIPE_TEST_DATABASE_URL:-}" ]; then
		testdb_dir=$work/postgres
		STARPIPE_TEST_DATABASE_URL=$(bin/starpipe testdb start --dir "$testdb_dir")
		export STARPIPE_TEST_DATABASE_URL
	fi
	db=sp_benchmem_$$
	psql -q "$STARPIPE_TEST_DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
	dropdb=$db
	dburl=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$STARPIPE_TEST_DATABASE_URL" "$db")
	brokers=127.0.0.1:$(freeport)
	"$BIN" broker --data "$work/broker" --listen "$brokers" --log-level warn >"$work/broker.log" 2>&1 &
	broker=$!
	pids+=("$broker")
	STARPIPE_DATABASE_URL=$dburl STARPIPE_KAFKA_BROKERS=$brokers STARPIPE_ROLES=api,ingest,relay \
		STARPIPE_STATE_DIR=$work/state STARPIPE_LISTEN=$listen STARPIPE_LOG_LEVEL=warn \
		"$BIN" serve >"$work/daemon.log" 2>&1 &
	daemon=$!
	pids+=("$daemon")
	for _ in $(seq 600); do
		curl -sf "http://$listen/readyz" >/dev/null 2>&1 && break
		kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
		sleep 0.1
	done
	token=$(STARPIPE_DATABASE_URL=$dburl "$CLIENT" tokens create --name bench-memory --role ingest)
	;;
dev)
	"$BIN" dev --state "$work/state" --listen "$listen" >"$work/daemon.log" 2>&1 &
	daemon=$!
	pids+=("$daemon")
	for _ in $(seq 1200); do
		[ -s "$work/state/admin.token" ] && curl -sf "http://$listen/readyz" >/dev/null 2>&1 && break
		kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
		sleep 0.1
	done
	token=$(cat "$work/state/admin.token")
	;;
*)
	echo "bench-memory: MODE is serve or dev" >&2
	exit 2
	;;
esac

idle=$(hwm "$daemon")
echo "bench-memory: daemon ready (pid $daemon, $idle MB peak so far); uploading $((size / 1000000)) MB" >&2
start=$(date +%s.%N)
STARPIPE_TOKEN=$token "$CLIENT" ingest --server "http://$listen" --scope "git.example.com/bench/memory" \
	--kind code --wait --timeout "$TIMEOUT" "$work/upload.sarif" >"$work/summary.json"
end=$(date +%s.%N)
peak=$(hwm "$daemon")
status=$(grep -o '"status": *"[a-z]*"' "$work/summary.json" | tail -1 | tr -d ' "' | cut -d: -f2)
findings=$(grep -o '"findings": *[0-9]*' "$work/summary.json" | tail -1 | tr -d ' "' | cut -d: -f2)
line="mode=$MODE bin=$BIN file_mb=$((size / 1000000)) results=$RESULTS seconds=$(printf '%.0f' "$(echo "$end - $start" | bc)") daemon_peak_rss_mb=$peak idle_peak_mb=$idle run=$status findings=$findings"
if [ -n "${broker:-}" ]; then
	line="$line broker_peak_rss_mb=$(hwm "$broker")"
fi
echo "$line"
