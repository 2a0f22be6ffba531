#!/usr/bin/env bash
# bench.sh: the benchmark suite. Installs what it needs, builds and installs
# crm_kpi, starts a private cluster set up for measuring, generates its data
# from a fixed seed, times crm_kpi's aggregates against plain SQL and the
# tdigest extension (serial and with 2 parallel workers); then, on ~10M
# generated CRM orders, the KPI tables' incremental refresh against
# materialized views, the change capture's cost on writes, and rebuild()
# (bench/kpi.sh); every Grafana panel query against the same panel computed
# from the source tables, on three years of data (bench/panels.sh); prints
# markdown tables and writes them to bench/RESULTS.md.
#
#   bash scripts/bench.sh               full size (10M / 5M / ~1.2M rows; 10M orders)
#   bash scripts/bench.sh --quick       a tenth of the size, to try it out
#   bash scripts/bench.sh --reps N      timed rounds per query (default 5)
#   bash scripts/bench.sh --kpi-reps N  timed rounds per KPI-table comparison
#                                       (default 3 with --quick, else 1)
#   bash scripts/bench.sh --stand-ins   time plain-SQL stand-ins in place of the
#                                       crm_kpi functions this build lacks
#   bash scripts/bench.sh --panels-only only the Grafana panel section
#   bash scripts/bench.sh --kpi-only    only the KPI-table section (refresh, capture,
#                                       rebuild, freshness)
#   bash scripts/bench.sh --soak        only the soak (bench/soak.sh): 10 minutes of
#                                       writers, dashboard readers and the refresh worker
#   bash scripts/bench.sh --soak --soak-minutes N   the soak for N minutes
#
# Only a full run of all of crm_kpi's own sections writes bench/RESULTS.md; the
# others write bench/tmp/RESULTS.md. The soak writes its own section into
# bench/RESULTS.md (bench/tmp/RESULTS.md when shorter than 10 minutes), and a
# full run keeps that section.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=0
STAND_INS=0
PANELS_ONLY=0
KPI_ONLY=0
SOAK=0
SOAK_MINUTES=
REPS=5
KPI_REPS=
COMMAND="bash scripts/bench.sh${*:+ $*}"
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--stand-ins) STAND_INS=1 ;;
	--panels-only) PANELS_ONLY=1 ;;
	--kpi-only) KPI_ONLY=1 ;;
	--soak) SOAK=1 ;;
	--soak-minutes)
		if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "--soak-minutes needs a positive number"; fi
		SOAK_MINUTES=$2
		shift
		;;
	--reps)
		if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "--reps needs a positive number"; fi
		REPS=$2
		shift
		;;
	--kpi-reps)
		if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "--kpi-reps needs a positive number"; fi
		KPI_REPS=$2
		shift
		;;
	-h | --help)
		sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option '$1' (--quick, --reps N, --kpi-reps N, --stand-ins, --panels-only, --kpi-only, --soak, --soak-minutes N)" ;;
	esac
	shift
done

if [ "$SOAK" -eq 1 ]; then
	if [ "$QUICK" -eq 1 ] || [ "$STAND_INS" -eq 1 ] || [ "$PANELS_ONLY" -eq 1 ] || [ "$KPI_ONLY" -eq 1 ] || [ -n "$KPI_REPS" ] || [ "$REPS" -ne 5 ]; then
		die "--soak takes no other option than --soak-minutes"
	fi
	: "${SOAK_MINUTES:=10}"
	ensure_packages "${DEPS_BUILD[@]}"
	. "$SRC_ROOT/bench/soak.sh"
	soak_main
	exit 0
fi
[ -z "$SOAK_MINUTES" ] || die "--soak-minutes goes with --soak"

if [ "$QUICK" -eq 1 ]; then
	SURVEY_ROWS=1000000 LATENCY_ROWS=500000 DAYS=1096 PER_DAY=150
	: "${KPI_REPS:=3}"
else
	SURVEY_ROWS=10000000 LATENCY_ROWS=5000000 DAYS=1096 PER_DAY=1500
	: "${KPI_REPS:=1}"
fi
[ "$PANELS_ONLY" -eq 1 ] && [ "$KPI_ONLY" -eq 1 ] && die "--panels-only and --kpi-only exclude each other"
[ "$STAND_INS" -eq 1 ] && [ "$KPI_ONLY" -eq 1 ] && die "--kpi-only has no stand-ins"
if [ "$QUICK" -eq 0 ] && [ "$STAND_INS" -eq 0 ] && [ "$PANELS_ONLY" -eq 0 ] && [ "$KPI_ONLY" -eq 0 ]; then
	RESULTS=$SRC_ROOT/bench/RESULTS.md
else
	RESULTS=$SRC_ROOT/bench/tmp/RESULTS.md
fi

ensure_packages "${DEPS_BUILD[@]}" "${DEPS_BENCH[@]}"
STARTED=$(date +%s)

STAGE=$(make_private_dir crm_kpi-bench)
KEEP_DATA=0 # on a failed run the logs are kept, the data never
begin_staged_run "benchmark logs"
# The revision measured: the one staged now (commits made during the run do not change it).
REVISION=$(git -C "$SRC_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$SRC_ROOT" status --porcelain -- src bench scripts Makefile ':!bench/RESULTS.md' 2>/dev/null)" ]; then
	REVISION="$REVISION, with uncommitted changes"
fi

# Shared buffers large enough to hold every table (2GB), but never more than
# a quarter of the machine's memory.
MEM_KB=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
SHARED_MB=$((MEM_KB / 4096))
[ "$SHARED_MB" -gt 2048 ] && SHARED_MB=2048

PORT=$(free_port 55632)
printf '%s\n' \
	"shared_buffers = '${SHARED_MB}MB'" \
	"work_mem = '256MB'" \
	"maintenance_work_mem = '512MB'" \
	"max_parallel_workers_per_gather = 2" \
	"max_parallel_workers = 8" \
	"jit = off" \
	"fsync = off" \
	"synchronous_commit = off" \
	"full_page_writes = off" \
	"wal_level = minimal" \
	"max_wal_senders = 0" \
	"max_wal_size = '8GB'" \
	"autovacuum = off" \
	"crm_kpi.enabled = off" |
	cluster_start "$STAGE" "$PORT" ''
say "private cluster on socket $STAGE, port $PORT (shared_buffers ${SHARED_MB}MB)"

DB=crm_kpi_bench
psql_pg() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$STAGE" -p "$PORT" -U postgres "$@"; }
psql_db() { psql_pg -d "$DB" "$@"; }

psql_pg -d postgres -c "CREATE DATABASE $DB"
psql_db -c 'CREATE EXTENSION crm_kpi' -c 'CREATE EXTENSION tdigest'
TABLE=$STAGE/table.md
: >"$TABLE"
if [ "$KPI_ONLY" -eq 1 ]; then
	psql_db -f "$STAGE/src/bench/driver.sql"
	. "$STAGE/src/bench/kpi.sh"
	kpi_section
	psql_db -f "$STAGE/src/bench/report_helpers.sql" -f "$STAGE/src/bench/kpi_report.sql" >>"$TABLE"
	. "$STAGE/src/bench/freshness.sh"
	freshness_section >>"$TABLE"
elif [ "$PANELS_ONLY" -eq 0 ]; then
	psql_db -f "$STAGE/src/bench/driver.sql"
	psql_db -v stand_ins="$STAND_INS" -f "$STAGE/src/bench/contenders.sql"

	MISSING=$(psql_db -At -c 'SELECT f FROM bench.missing_functions() f')
	if [ -n "$MISSING" ]; then
		say "this build of crm_kpi lacks functions the benchmark times:"
		while IFS= read -r f; do say "  $f"; done <<<"$MISSING"
		die "build them first (or check the driver alone with --stand-ins)"
	fi

	say "generating data (fixed seed): $SURVEY_ROWS survey rows, $LATENCY_ROWS response times, $DAYS days x ~$PER_DAY responses"
	SECONDS=0
	psql_db -v survey_rows="$SURVEY_ROWS" -v latency_rows="$LATENCY_ROWS" -v days="$DAYS" -v per_day="$PER_DAY" \
		-f "$STAGE/src/bench/data.sql" >/dev/null
	say "data ready in ${SECONDS}s"

	# The sketch's own error bound, when crm_kpi has the sketch functions.
	psql_db -c "
	DO \$\$
	BEGIN
		IF to_regtype('crm_kpi.sketch') IS NOT NULL
		   AND to_regprocedure('crm_kpi.relative_error(crm_kpi.sketch)') IS NOT NULL
		   AND to_regprocedure('crm_kpi.sketch_agg(double precision)') IS NOT NULL THEN
			EXECUTE 'INSERT INTO bench.meta SELECT ''sketch_bound'', crm_kpi.relative_error(crm_kpi.sketch_agg(x))::text FROM bench.latency';
		END IF;
	END \$\$"

	for c in 1 2 3; do
		for w in 0 2; do
			SECONDS=0
			psql_db -c "SELECT bench.run($c, $w, $REPS)" >/dev/null
			say "comparison $c, $([ "$w" -eq 0 ] && echo serial || echo "$w workers"): ${SECONDS}s"
		done
	done

	# The KPI tables: refresh, capture, rebuild (bench/kpi.sh); not with stand-ins.
	KPI_REPORT=()
	if [ "$STAND_INS" -eq 0 ]; then
		. "$STAGE/src/bench/kpi.sh"
		kpi_section
		KPI_REPORT=(-f "$STAGE/src/bench/kpi_report.sql")
	fi

	psql_db -f "$STAGE/src/bench/report.sql" "${KPI_REPORT[@]}" >>"$TABLE"
	# Freshness with the background worker (bench/freshness.sh), on the KPI section's data.
	if [ "$STAND_INS" -eq 0 ]; then
		. "$STAGE/src/bench/freshness.sh"
		freshness_section >>"$TABLE"
	fi
fi
# The Grafana panels against the raw tables (bench/panels.sh), in a database of its own.
if [ "$STAND_INS" -eq 0 ] && [ "$KPI_ONLY" -eq 0 ]; then
	. "$STAGE/src/bench/panels.sh"
	panels_section >>"$TABLE"
fi

PG_VERSION=$(psql_db -At -c 'SHOW server_version')
CRM_KPI_VERSION=$(psql_db -At -c "SELECT extversion FROM pg_extension WHERE extname = 'crm_kpi'")
TDIGEST_VERSION=$(psql_db -At -c "SELECT extversion FROM pg_extension WHERE extname = 'tdigest'")
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)

{
	echo "# crm_kpi benchmark results"
	echo
	if [ "$STAND_INS" -eq 1 ]; then
		echo "**Run with --stand-ins: rows named \"stand-in\" time plain SQL in place of a crm_kpi function" \
			"this build lacks; they are NOT crm_kpi's times, and neither are the targets that use them.**"
		echo
	fi
	echo "- command: \`$COMMAND\` ($REPS timed rounds per query after one warm-up; medians)"
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); the whole run took $((($(date +%s) - STARTED + 30) / 60)) min"
	echo "- machine: $(nproc) CPUs (${CPU:-unknown}), $((MEM_KB / 1024 / 1024)) GiB memory"
	echo "- PostgreSQL $PG_VERSION, crm_kpi $CRM_KPI_VERSION (revision $REVISION), tdigest $TDIGEST_VERSION"
	echo "- settings: shared_buffers ${SHARED_MB}MB, work_mem 256MB, jit off, fsync off, autovacuum off;" \
		"serial rows with max_parallel_workers_per_gather = 0, parallel rows with 2"
	echo "- times: on the server, clock_timestamp() around EXECUTE in PL/pgSQL" \
		"(no result transfer, no EXPLAIN instrumentation); data generated in SQL from fixed seeds"
	echo
	cat "$TABLE"
} >"$STAGE/RESULTS.md"

# The soak's section (bash scripts/bench.sh --soak) of the file this run replaces is kept.
if [ -f "$RESULTS" ]; then
	sed -n '/^<!-- soak: begin/,/^<!-- soak: end -->$/p' "$RESULTS" >"$STAGE/soak.md"
	if [ -s "$STAGE/soak.md" ]; then { echo; cat "$STAGE/soak.md"; } >>"$STAGE/RESULTS.md"; fi
fi
mkdir -p "$(dirname "$RESULTS")"
cp "$STAGE/RESULTS.md" "$RESULTS"
echo
cat "$STAGE/RESULTS.md"
say "written to ${RESULTS#"$SRC_ROOT"/}"
KEEP_STAGE=0
