#!/usr/bin/env bash
# test.sh: the test command. Installs what it needs, builds and installs
# crm_kpi, starts a private throwaway cluster (with the preload) as an
# unprivileged user, runs the four suites (pg_regress, pgTAP, isolation, TAP)
# and ends with one line totalling them: "N passed, N failed".
#
#   bash scripts/test.sh              all suites
#   bash scripts/test.sh regress tap  only those suites
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(regress pgtap isolation tap)

ensure_packages "${DEPS_BUILD[@]}" "${DEPS_TEST[@]}"

STAGE=$(make_private_dir crm_kpi-test)
begin_staged_run "test files and logs" # kept unless every suite passes

PORT=$(free_port 55432)
# The refresh workers stay off here: pg_regress, pgTAP and isolation call
# crm_kpi.refresh() themselves and assert what it did; the TAP suites test the
# workers on clusters of their own.
cluster_start "$STAGE" "$PORT" '' <<'EOF'
fsync = off
max_prepared_transactions = 10
crm_kpi.enabled = off
EOF
export PGHOST=$STAGE PGPORT=$PORT PGUSER=postgres
say "private cluster on socket $STAGE, port $PORT"

TOTAL_PASSED=0
TOTAL_FAILED=0
LINES=()

# Add a suite's counts: name, passed, failed.
tally() {
	TOTAL_PASSED=$((TOTAL_PASSED + $2))
	TOTAL_FAILED=$((TOTAL_FAILED + $3))
	LINES+=("$(printf '%-10s %4d passed, %d failed' "$1" "$2" "$3")")
}

# Counts from pg_regress / pg_isolation_regress output ($1: log, $2: exit code).
count_pg_regress() {
	local log=$1 rc=$2 n f total
	if n=$(grep -oE 'All [0-9]+ tests passed' "$log" | grep -oE '[0-9]+'); then
		echo "$n 0"
	elif f=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$log"); then
		read -r n _ total _ <<<"$f"
		echo "$((total - n)) $n"
	else
		# The runner died before its summary: count that as a failure.
		echo "0 $([ "$rc" -eq 0 ] && echo 0 || echo 1)"
	fi
}

# Counts from a TAP harness summary (prove, pg_prove) ($1: log, $2: exit code).
# A failing file counts its failed subtests, or 1 when it failed otherwise
# (died, bad plan); passed is every subtest run that did not fail.
count_tap() {
	local log=$1 rc=$2 total per_file
	total=$(grep -oE '^Files=[0-9]+, Tests=[0-9]+' "$log" | tail -1 | sed 's/.*Tests=//')
	[ -n "$total" ] || { echo "0 1"; return; }
	per_file=$(grep -oE '\(Wstat: [0-9]+ .*Tests: [0-9]+ Failed: [0-9]+\)' "$log" | sed -E 's/.*Failed: ([0-9]+)\)/\1/')
	printf '%s\n' "$per_file" | awk -v total="$total" -v rc="$rc" '
		NF { sub_failed += $1; failed += ($1 > 0 ? $1 : 1) }
		END { if (rc != 0 && failed == 0) failed = 1; print total - sub_failed, failed + 0 }'
}

run_regress() {
	local log=$STAGE/regress.log rc
	say "== pg_regress (sql/, expected/)"
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" installcheck ISOLATION= TAP_TESTS= \
		2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	if [ -s "$STAGE/src/regression.diffs" ]; then
		say "-- regression.diffs:"
		cat "$STAGE/src/regression.diffs"
	fi
	tally pg_regress $(count_pg_regress "$log" "$rc")
	return "$rc"
}

run_pgtap() {
	local log=$STAGE/pgtap.log rc
	say "== pgTAP (test/pgtap)"
	as_pg psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE crm_kpi_pgtap' >/dev/null \
		&& as_pg psql -X -q -v ON_ERROR_STOP=1 -d crm_kpi_pgtap -c 'CREATE EXTENSION pgtap' >/dev/null
	(cd "$STAGE/src" && as_pg pg_prove --ext .sql -d crm_kpi_pgtap -U postgres -h "$PGHOST" -p "$PGPORT" \
		--timer test/pgtap/) 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	tally pgTAP $(count_tap "$log" "$rc")
	return "$rc"
}

run_isolation() {
	local log=$STAGE/isolation.log rc
	say "== isolation (test/isolation)"
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" installcheck REGRESS= TAP_TESTS= \
		2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	if [ -s "$STAGE/src/output_iso/regression.diffs" ]; then
		say "-- output_iso/regression.diffs:"
		cat "$STAGE/src/output_iso/regression.diffs"
	fi
	tally isolation $(count_pg_regress "$log" "$rc")
	return "$rc"
}

run_tap() {
	local log=$STAGE/tap.log rc
	say "== TAP (test/tap, PostgreSQL::Test::Cluster)"
	as_pg make -s -C "$STAGE/src" PG_CONFIG="$PG_CONFIG" installcheck REGRESS= ISOLATION= \
		2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ] && [ -d "$STAGE/src/tmp_check/log" ]; then
		say "-- TAP logs are in $STAGE/src/tmp_check/log"
	fi
	tally TAP $(count_tap "$log" "$rc")
	return "$rc"
}

STATUS=0
for s in "${SUITES[@]}"; do
	case $s in
	regress | pgtap | isolation | tap) "run_$s" || STATUS=1 ;;
	*) die "unknown suite '$s' (regress, pgtap, isolation, tap)" ;;
	esac
done

[ "$STATUS" -eq 0 ] && KEEP_STAGE=0
echo
printf '%s\n' "${LINES[@]}"
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$STATUS"
