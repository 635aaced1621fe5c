#!/usr/bin/env bash
# Makes sure the machine has what `make run` and `make test` need beyond Go:
# the PostgreSQL server binaries (for the private cluster), gcc (cgo, for
# nuclei's SQLite) and git (go-git's local clones). As root with apt-get it
# installs what is missing; otherwise it says what to install.
#
# As root it also creates the system account the private PostgreSQL runs as
# (PostgreSQL refuses to run as root): starpipe-pg (pgcluster.DefaultUser),
# with no login shell and its home /var/lib/starpipe-pg (0700), where the
# servers' data directories then live. It also creates starpipe-scan
# (code.SandboxUser), with no home and no login shell: when the daemon runs
# as root, code analysers run as that account (never as root), in a work
# directory outside the state directory. This is the only place starpipe
# creates accounts; the daemon and the tests only look them up.
set -euo pipefail

PG_USER=starpipe-pg # pgcluster.DefaultUser
PG_HOME=/var/lib/starpipe-pg
SCAN_USER=starpipe-scan # code.SandboxUser

ensure_account() {
	[ "$(id -u)" -eq 0 ] || return 0 # not root: the server runs as you
	if ! id -u "$PG_USER" >/dev/null 2>&1; then
		if ! command -v useradd >/dev/null 2>&1; then
			echo "starpipe needs a system account $PG_USER (home $PG_HOME) to run PostgreSQL as root; create it (no useradd here)" >&2
			return 1
		fi
		group=(--user-group)
		# A group of that name may be left from an earlier account.
		getent group "$PG_USER" >/dev/null 2>&1 && group=(--gid "$PG_USER")
		echo "==> creating system account $PG_USER for the private PostgreSQL"
		useradd --system --home-dir "$PG_HOME" --no-create-home --shell /usr/sbin/nologin "${group[@]}" "$PG_USER"
	fi
	home=$(getent passwd "$PG_USER" | cut -d: -f6)
	if [ ! -d "$home" ]; then
		mkdir -p "$home"
		chown "$PG_USER:" "$home"
	fi
	chmod 0700 "$home"
	if ! id -u "$SCAN_USER" >/dev/null 2>&1; then
		group=(--user-group)
		getent group "$SCAN_USER" >/dev/null 2>&1 && group=(--gid "$SCAN_USER")
		echo "==> creating system account $SCAN_USER for code analysers"
		useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "${group[@]}" "$SCAN_USER"
	fi
}

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
if [ ${#missing[@]} -eq 0 ]; then
	ensure_account
	exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "==> installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
	ensure_account
	exit 0
fi
echo "starpipe needs: ${missing[*]} (Debian/Ubuntu: sudo apt-get install -y ${missing[*]})" >&2
exit 1
