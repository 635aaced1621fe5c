#!/usr/bin/env bash
# Makes sure the machine has what `make run` and `make test` need beyond Go:
# the PostgreSQL server binaries (for the private cluster), gcc (cgo, for
# nuclei's SQLite) and git (go-git's local clones). As root with apt-get it
# installs what is missing; otherwise it says what to install.
set -euo pipefail

have_pg() {
	command -v initdb >/dev/null 2>&1 && return 0
	[ -n "${STARPIPE_PG_BINDIR:-}" ] && [ -x "$STARPIPE_PG_BINDIR/initdb" ] && return 0
	if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then return 0; fi
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

missing=()
have_pg || missing+=(postgresql)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v git >/dev/null 2>&1 || missing+=(git)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "==> installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
	exit 0
fi
echo "starpipe needs: ${missing[*]} (Debian/Ubuntu: sudo apt-get install -y ${missing[*]})" >&2
exit 1
