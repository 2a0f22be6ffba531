#!/usr/bin/env bash
# memcheck.sh: run crm_kpi's C code under UndefinedBehaviorSanitizer, or under valgrind's
# memcheck, over a pass of the pg_regress suite (sql/) and a small pass of the
# hostile-input test (test/tap/006_fuzz.pl). A developer's tool, not part of the test
# command: it is slow (valgrind especially).
#
#   bash scripts/memcheck.sh                  ubsan, then valgrind
#   bash scripts/memcheck.sh ubsan            one of them
#   MEMCHECK_REGRESS="nps sketch" bash scripts/memcheck.sh valgrind
#                                             only those pg_regress files (default: all
#                                             under ubsan, those of the types under valgrind)
#   MEMCHECK_FUZZ_INPUTS=500                  inputs per type and form of the fuzz pass
#                                             (default 1000 under ubsan, 100 under valgrind; 0: skip it)
#   MEMCHECK_KEEP=1                           keep the stage (logs and valgrind's reports) after
#                                             a clean run too
#
# Everything runs in a private copy of the PostgreSQL installation (the machine's
# installed crm_kpi is never touched, so no install lock is taken), in which
# bin/postgres becomes a wrapper that starts the real server with the sanitizer's
# options, or under valgrind. Ends with what was found: every sanitizer report
# (PostgreSQL itself is not instrumented, so they are all crm_kpi's), and the
# valgrind errors counted by whose code they are in: crm_kpi's, the server's when
# crm_kpi called it, or the server's alone (valgrind reports PostgreSQL's own
# harmless ones too: padding bytes written to disk and the like). Exits 1 when a
# test failed, or a report is in crm_kpi's code.
#
# Why not AddressSanitizer: its runtime must be preloaded into the uninstrumented
# server, and Debian's postgres 15 then hangs at startup, before it writes a line;
# valgrind finds what it would (invalid reads and writes of malloc'd memory, uses
# after free) and uninitialised bytes besides.
# Neither sees overruns inside a palloc'd block: PostgreSQL would need building
# with USE_VALGRIND for that.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(ubsan valgrind)
for m in "${MODES[@]}"; do
	case $m in ubsan | valgrind) ;; *) die "unknown mode '$m' (ubsan, valgrind)" ;; esac
done

ensure_packages "${DEPS_BUILD[@]}" "${DEPS_TEST[@]}" valgrind

STAGE=$(make_private_dir crm_kpi-memcheck)
STAGE_WHAT="memcheck logs"
KEEP_STAGE=1
KEEP_DATA=0
trap staged_cleanup EXIT
trap 'exit 130' INT TERM
stage_tree

# A private, relocatable copy of the installation: PostgreSQL finds its share and
# lib directories relative to its binaries, and PGXS asks pg_config.
SYS_PREFIX=$($PG_CONFIG --bindir)
SYS_PREFIX=${SYS_PREFIX%/lib/postgresql/*}
PRIV=$STAGE/pg
mkdir -p "$PRIV/usr/lib/postgresql" "$PRIV/usr/share/postgresql"
cp -a "$SYS_PREFIX/lib/postgresql/$PG_MAJOR" "$PRIV/usr/lib/postgresql/"
cp -a "$SYS_PREFIX/share/postgresql/$PG_MAJOR" "$PRIV/usr/share/postgresql/"
ln -s "$SYS_PREFIX/include" "$PRIV/usr/include"
PG_BIN=$PRIV/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
mv "$PG_BIN/postgres" "$PG_BIN/postgres.real"
[ "$(id -u)" -eq 0 ] && chown -R "$PG_OS_USER:" "$PRIV/usr/lib/postgresql" "$PRIV/usr/share/postgresql"

STATUS=0
SUMMARY=()

# Build crm_kpi with $1 as extra compiler (and linker) flags and install it into the private copy.
build_into_private() {
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" clean >/dev/null 2>&1
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" COPT="$1" >"$STAGE/build.log" 2>&1 \
		&& as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" COPT="$1" install >>"$STAGE/build.log" 2>&1 \
		|| { cat "$STAGE/build.log" >&2; die "build failed"; }
}

# Make bin/postgres start the real server as $1 says (the rest of a shell script).
wrap_postgres() {
	printf '#!/bin/sh\n%s\n' "$1" | as_pg tee "$PG_BIN/postgres" >/dev/null
	chmod 0755 "$PG_BIN/postgres"
}

# pg_regress over the running private cluster, then the fuzz test on its own cluster; both logged in $1.
run_pass() {
	local dir=$1 inputs=$2 regress rc
	regress=${MEMCHECK_REGRESS-$3}
	say "-- pg_regress${regress:+ ($regress)}"
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" installcheck ISOLATION= TAP_TESTS= \
		${regress:+REGRESS="$regress"} >"$dir/regress.log" 2>&1
	rc=$?
	tail -3 "$dir/regress.log" >&2
	[ -s "$STAGE/src/regression.diffs" ] && cp "$STAGE/src/regression.diffs" "$dir/"
	[ "$rc" -eq 0 ] || { STATUS=1; SUMMARY+=("$MODE: pg_regress failed (see $dir/regress.log)"); }
	if [ "$inputs" -gt 0 ]; then
		say "-- fuzz test, $inputs inputs per type and form"
		as_pg env CRM_KPI_FUZZ_INPUTS="$inputs" make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" installcheck \
			REGRESS= ISOLATION= PROVE_TESTS=test/tap/006_fuzz.pl >"$dir/fuzz.log" 2>&1
		rc=$?
		grep -E 'inputs tried|^Result' "$dir/fuzz.log" >&2
		[ -d "$STAGE/src/tmp_check/log" ] && cp -r "$STAGE/src/tmp_check/log" "$dir/fuzz_tap_logs"
		[ "$rc" -eq 0 ] || { STATUS=1; SUMMARY+=("$MODE: the fuzz test failed (see $dir/fuzz.log)"); }
	fi
}

for MODE in "${MODES[@]}"; do
	DIR=$STAGE/$MODE
	as_pg mkdir -p "$DIR"
	say "== $MODE"
	if [ "$MODE" = ubsan ]; then
		# The runtime comes in with crm_kpi.so (libubsan needs no preloading); each report is logged.
		build_into_private "-fsanitize=undefined,float-cast-overflow,float-divide-by-zero -fno-omit-frame-pointer -g"
		# A build that silently lost the flags would report nothing: insist on the checks.
		[ "$(nm -D "$PRIV/usr/lib/postgresql/$PG_MAJOR/lib/crm_kpi.so" | grep -c __ubsan_handle_)" -gt 0 ] \
			|| die "crm_kpi.so was built without UndefinedBehaviorSanitizer"
		wrap_postgres "export UBSAN_OPTIONS=print_stacktrace=1:log_path=$DIR/ubsan
exec \"\$(dirname \"\$0\")/postgres.real\" \"\$@\""
		INPUTS=${MEMCHECK_FUZZ_INPUTS:-1000}
		REGRESS=''	# all of sql/
		EXTRA_CONF=''
	else
		build_into_private "-g"
		# initdb's bootstrap and single-user runs, and version checks, run natively (fast).
		wrap_postgres "case \" \$* \" in *' --boot '* | *' --single '* | *' -V '* | *' --version '*) exec \"\$(dirname \"\$0\")/postgres.real\" \"\$@\" ;; esac
exec valgrind --quiet --trace-children=yes --leak-check=no --error-limit=no --num-callers=40 --track-origins=yes --fullpath-after= --log-file=$DIR/vg.%p.log \"\$(dirname \"\$0\")/postgres.real\" \"\$@\""
		INPUTS=${MEMCHECK_FUZZ_INPUTS:-100}
		# No JIT: LLVM compiling under valgrind is slow and reports glibc's dlopen, not crm_kpi.
		EXTRA_CONF='jit = off'
		# The files of the types and aggregates (the KPI-table ones take too long under valgrind).
		REGRESS='nps csat rate purchase sketch summary_fuzz fuzz_regressions lifecycle periods'
	fi
	PORT=$(free_port 56432)
	as_pg rm -rf "$STAGE/data"
	# The settings go to the fuzz test's own cluster too (PostgreSQL::Test::Cluster reads TEMP_CONFIG).
	printf '%s\n' "$EXTRA_CONF" | as_pg tee "$DIR/extra.conf" >/dev/null
	cluster_start "$STAGE" "$PORT" '' <<EOF
fsync = off
crm_kpi.enabled = off
$EXTRA_CONF
EOF
	export PGHOST=$STAGE PGPORT=$PORT PGUSER=postgres TEMP_CONFIG=$DIR/extra.conf
	run_pass "$DIR" "$INPUTS" "$REGRESS"
	cluster_stop "$STAGE"
	as_pg cp "$STAGE/server.log" "$DIR/server.log"
	as_pg truncate -s 0 "$STAGE/server.log"

	if [ "$MODE" = ubsan ]; then
		# A report goes to the server's stderr (its log) or, where the runtime honours log_path, to ubsan.<pid>.
		reports=$(cat "$DIR"/ubsan.* 2>/dev/null; grep -rh 'runtime error:' "$DIR/server.log" "$DIR/fuzz_tap_logs" 2>/dev/null)
		n=$(printf '%s' "$reports" | grep -c 'runtime error:')
		SUMMARY+=("ubsan: $n undefined-behaviour reports")
		if [ "$n" -gt 0 ]; then
			STATUS=1
			printf '%s\n' "$reports" | grep 'runtime error:' | sort | uniq -c | sort -rn | head -20 >&2
		fi
	else
		# Error blocks (a report's lines up to the blank line that ends it), each as one line:
		# whose it is, its headline, and the function it names first. A frame is crm_kpi's
		# when it is in its sources (valgrind prints them with --fullpath-after=) or in
		# crm_kpi.so, the server's when in the private installation, else a library's
		# (glibc). The report is crm_kpi's when a stack (where it happened, where the memory
		# was allocated or freed, where an uninitialised value came from) has a crm_kpi
		# frame first of those two; "via crm_kpi" when crm_kpi is only deeper down (it
		# called the server, which erred on memory of its own); the server's otherwise.
		awk -v own="$STAGE/src/" -v pg="$STAGE/pg/" '
			function mine(x) { return index(x, own) || x ~ /crm_kpi\.so/ }
			function flush(   n, l, i, cls, fn, first, name, from) {
				if (b == "") return
				cls = mine(b) ? "via crm_kpi" : "server"
				n = split(b, l, "\n")
				for (i = 2; i <= n; i++) {
					# the first crm_kpi function in the report, for "via crm_kpi"
					if (from == "" && l[i] ~ /^(at|by) 0x/ && mine(l[i]) && match(l[i], /: [A-Za-z_][A-Za-z0-9_]* \(/))
						from = substr(l[i], RSTART + 2, RLENGTH - 4)
					if (l[i] ~ /^at 0x/) first = 1	# a stack begins
					if (l[i] !~ /^(at|by) 0x/ || !first || !(mine(l[i]) || index(l[i], pg))) continue
					first = 0
					name = match(l[i], /: [A-Za-z_][A-Za-z0-9_]* \(/) ? substr(l[i], RSTART + 2, RLENGTH - 4) : "???"
					if (fn == "" && name != "???") fn = name
					if (mine(l[i])) { cls = "crm_kpi"; fn = name }
				}
				print cls "\t" h "\t" fn (cls == "via crm_kpi" ? " (called from " from ")" : "")
				b = ""
			}
			/^==[0-9]+== *$/ { flush(); next }
			/^==[0-9]+== / { line = $0; sub(/^==[0-9]+== +/, "", line); if (b == "") h = line; b = b line "\n" }
			END { flush() }' "$DIR"/vg.*.log 2>/dev/null >"$DIR/valgrind_errors.tsv"
		ours=$(grep -c '^crm_kpi' "$DIR/valgrind_errors.tsv")
		via=$(grep -c '^via crm_kpi' "$DIR/valgrind_errors.tsv")
		theirs=$(grep -c '^server' "$DIR/valgrind_errors.tsv")
		SUMMARY+=("valgrind: $ours error reports in crm_kpi's code, $via in the server called by crm_kpi, $theirs elsewhere in the server ($(ls "$DIR"/vg.*.log | wc -l) processes)")
		sort "$DIR/valgrind_errors.tsv" | uniq -c | sort -rn | head -20 >&2
		[ "$ours" -eq 0 ] || STATUS=1
	fi
done

# MEMCHECK_KEEP=1 keeps the stage (logs, valgrind's reports) after a clean run too.
[ "$STATUS" -eq 0 ] && [ "${MEMCHECK_KEEP:-0}" != 1 ] && KEEP_STAGE=0
echo
printf '%s\n' "${SUMMARY[@]}"
exit "$STATUS"
