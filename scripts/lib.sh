# lib.sh: shared by scripts/test.sh, scripts/demo.sh and scripts/bench.sh.
# Installs what the build needs, stages a copy of the tree where the server's
# unprivileged user can read it, builds and installs the extension, and runs a
# private PostgreSQL cluster that belongs to the calling script alone.
# shellcheck shell=bash

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
# The unprivileged OS user the private clusters run as (PostgreSQL refuses root).
PG_OS_USER=${CRM_KPI_OS_USER:-postgres}
SRC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the benchmarks need.
DEPS_BUILD=(make gcc postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR)
DEPS_TEST=(postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl perl)
DEPS_BENCH=(postgresql-$PG_MAJOR-tdigest)

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Install the Debian packages named, when any is missing.
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run this as root"
	fi
	say "installing: ${missing[*]}"
	apt-get update -q >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
		|| die "apt-get install failed"
}

# Run a command as the unprivileged cluster user (as ourselves when not root),
# from inside $STAGE unless already there: the caller's directory (the clone)
# may be one that user cannot enter.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(
			case $PWD/ in "$STAGE"/*) ;; *) cd "$STAGE" ;; esac
			exec runuser -u "$PG_OS_USER" -- env PATH="$PG_BIN:$PATH" HOME="$STAGE" "$@"
		)
	else
		env PATH="$PG_BIN:$PATH" "$@"
	fi
}

# Hold a machine-wide lock for the rest of the calling script, so that two
# runs never install different builds over each other while testing.
hold_install_lock() {
	exec 9>"${TMPDIR:-/tmp}/crm_kpi-install.lock"
	flock -n 9 || { say "waiting for another crm_kpi test, demo or benchmark run to finish"; flock 9; }
}

# Make a private directory the cluster user owns; prints its path.
make_private_dir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || die "mktemp failed"
	chmod 0755 "$d"
	[ "$(id -u)" -eq 0 ] && chown "$PG_OS_USER:" "$d"
	printf '%s\n' "$d"
}

# Copy the source tree (without .git and build output) into $STAGE/src.
stage_tree() {
	mkdir -p "$STAGE/src"
	tar -C "$SRC_ROOT" --exclude=.git --exclude='*.o' --exclude='*.bc' --exclude='*.so' \
		--exclude=results --exclude=output_iso --exclude=tmp_check --exclude=tmp_check_iso \
		-cf - . | tar -C "$STAGE/src" -xf -
	[ "$(id -u)" -eq 0 ] && chown -R "$PG_OS_USER:" "$STAGE"
	return 0
}

# Build as the cluster user, install as root (or as ourselves when not root).
build_and_install() {
	say "building crm_kpi"
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" >"$STAGE/build.log" 2>&1 \
		|| { cat "$STAGE/build.log" >&2; die "build failed"; }
	make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" install >>"$STAGE/build.log" 2>&1 \
		|| { cat "$STAGE/build.log" >&2; die "make install failed (run as root or own $($PG_CONFIG --pkglibdir))"; }
}

# Print a TCP port nobody listens on, from $1 upward.
free_port() {
	local port=$1
	while [ "$port" -lt $(($1 + 500)) ]; do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && [ ! -e "/tmp/.s.PGSQL.$port" ]; then
			printf '%s\n' "$port"
			return 0
		fi
		port=$((port + 1))
	done
	die "no free port from $1"
}

# Create and start a cluster in $1 (data in $1/data, socket in $1), port $2,
# listening on $3 ('' for the socket only). Extra settings on stdin.
cluster_start() {
	local dir=$1 port=$2 listen=$3
	as_pg initdb -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync \
		>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
	{
		printf "port = %s\nlisten_addresses = '%s'\nunix_socket_directories = '%s'\n" "$port" "$listen" "$dir"
		printf "shared_preload_libraries = 'crm_kpi'\nlog_line_prefix = '%%m [%%p] %%q%%a '\n"
		cat
	} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
	# A marker so that stop commands only ever touch a cluster this project made.
	as_pg touch "$dir/data/crm_kpi.private-cluster"
	# 9>&-: the server must not inherit the install lock (a demo would hold it for ever).
	as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 9>&- \
		|| { cat "$dir/server.log" >&2; die "the private cluster did not start"; }
}

# Stop the cluster in $1 if it is one of ours and is running.
cluster_stop() {
	local dir=$1
	[ -f "$dir/data/crm_kpi.private-cluster" ] || return 0
	[ -f "$dir/data/postmaster.pid" ] || return 0
	as_pg pg_ctl -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
		|| as_pg pg_ctl -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# Stop $STAGE's cluster at exit; remove $STAGE unless KEEP_STAGE=1, in which
# case keep it (without its data directory when KEEP_DATA=0) and say so.
staged_cleanup() {
	cluster_stop "$STAGE"
	if [ "$KEEP_STAGE" -eq 1 ]; then
		[ "${KEEP_DATA:-1}" -eq 1 ] || [ -f "$STAGE/data/postmaster.pid" ] || rm -rf "$STAGE/data"
		say "$STAGE_WHAT kept in $STAGE"
	else
		rm -rf "$STAGE"
	fi
}

# Begin a run in $STAGE: clean up on every exit path (the stage is kept until
# the caller sets KEEP_STAGE=0), take the install lock, stage, build, install.
begin_staged_run() {
	STAGE_WHAT=$1
	KEEP_STAGE=1
	trap staged_cleanup EXIT
	trap 'exit 130' INT TERM
	hold_install_lock
	stage_tree
	build_and_install
}
