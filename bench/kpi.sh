# kpi.sh: the KPI-table section of scripts/bench.sh, sourced by it once its own
# comparisons are done (it uses QUICK, STAGE, PORT, DB, PG_BIN, psql_db, as_pg).
# On ~10M generated orders (a tenth with --quick), side by side in one run:
#   1. crm_kpi.refresh() against REFRESH MATERIALIZED VIEW CONCURRENTLY after
#      0.1 % of the orders changed (new orders, random updates, recent updates);
#   2. the capture triggers' cost: bulk INSERT ... SELECT and COPY, and pgbench
#      single-row inserts, with the triggers and without;
#   3. crm_kpi.rebuild(), concurrently (the default) and not, against REFRESH
#      MATERIALIZED VIEW of one view per KPI table; then each once more with a
#      quarter of work_mem and maintenance_work_mem;
# each timed operation in a backend of its own, whose memory is recorded.
# shellcheck shell=bash

if [ "$QUICK" -eq 1 ]; then
	KPI_CUSTOMERS=538000 KPI_CHANGES=1000 KPI_LOAD_ROWS=100000 KPI_PGBENCH_SECONDS=5
else
	KPI_CUSTOMERS=5380000 KPI_CHANGES=10000 KPI_LOAD_ROWS=1000000 KPI_PGBENCH_SECONDS=20
fi
KPI_DAYS=730
# Part 2's rounds are shorter: one more of them.
KPI_CAPTURE_REPS=$((KPI_REPS + 1))
KPI_LOAD_FILE=$STAGE/kpi_load.csv
KPI_APP=crm_kpi_bench_timed
# A quarter of the memory settings of scripts/bench.sh (work_mem 256MB, maintenance_work_mem 512MB).
KPI_QUARTER="SET work_mem = '64MB'; SET maintenance_work_mem = '128MB'"

psql_kpi() { psql_pg -d "dbname=$DB application_name=$KPI_APP" "$@"; }

# Time one statement (bench.kpi_time) in a backend of its own while sampling
# that backend's private memory (RssAnon) every 0.1 s.
# Arguments: part, scenario, contender, rep, SQL (a SELECT returns the detail),
# and optionally a SET statement for that backend first.
kpi_timed() {
	local pid='' peak=0 job k v
	psql_kpi -c "${6:-SELECT}" -c "SELECT bench.kpi_time($1, '$2', '$3', $4, \$sql\$$5\$sql\$)" >/dev/null &
	job=$!
	while kill -0 "$job" 2>/dev/null; do
		[ -n "$pid" ] || pid=$(psql_db -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$KPI_APP'")
		if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
			while read -r k v _; do
				if [ "$k" = RssAnon: ] && [ "$v" -gt "$peak" ]; then peak=$v; fi
			done <"/proc/$pid/status" || true
		fi
		sleep 0.1
	done
	wait "$job" || die "part $1, $2, $3 (round $4) failed"
	psql_db -c "UPDATE bench.kpi_timing SET anon_peak_kb = $peak
	            WHERE (part, scenario, contender, rep) = ($1, '$2', '$3', $4)"
}

# The contenders of a round in turn: first to last in even rounds, last to first in odd ones.
kpi_order() { # rep, names...
	local rep=$1
	shift
	if [ $((rep % 2)) -eq 0 ]; then printf '%s\n' "$@"; else printf '%s\n' "$@" | tac; fi
}

# Capture triggers on crm.orders: on or off.
kpi_capture() {
	psql_db -c "SELECT crm_kpi.capture_$([ "$1" = with ] && echo attach || echo detach)('orders', 'crm.orders')" >/dev/null
}

# The data, the first build and the views (bench/kpi_data.sql).
kpi_setup() {
	# 730 days of the generator give about 1.86 orders per customer.
	say "KPI tables: generating ~$((KPI_CUSTOMERS * 186 / 100)) orders ($KPI_CUSTOMERS customers, $KPI_DAYS days), first build"
	SECONDS=0
	psql_db -f "$STAGE/src/bench/kpi_driver.sql"
	psql_db -v customers="$KPI_CUSTOMERS" -v days="$KPI_DAYS" -v load_rows="$KPI_LOAD_ROWS" \
		-v load_file="$KPI_LOAD_FILE" -f "$STAGE/src/bench/kpi_data.sql" >/dev/null
	psql_db -c "INSERT INTO bench.meta VALUES ('kpi_changes', '$KPI_CHANGES'), ('kpi_load_rows', '$KPI_LOAD_ROWS'),
	            ('kpi_pgbench_seconds', '$KPI_PGBENCH_SECONDS'), ('kpi_reps', '$KPI_REPS'), ('kpi_capture_reps', '$KPI_CAPTURE_REPS')"
	say "KPI data and first build ready in ${SECONDS}s"
}

# 1. After each write, both ways of bringing the KPIs up to date. No warm-up
# round (the first build has just read everything; each statement runs in a
# backend of its own anyway): a round of the full size takes minutes.
kpi_part_refresh() {
	local scenario rep c
	for scenario in insert random recent; do
		SECONDS=0
		for rep in $(seq 1 "$KPI_REPS"); do
			psql_db -c "SELECT bench.kpi_time(1, '$scenario', 'write', $rep,
			            'SELECT bench.kpi_change(''$scenario'', $KPI_CHANGES, $rep)')" >/dev/null
			for c in $(kpi_order "$rep" engine mv); do
				if [ "$c" = engine ]; then
					kpi_timed 1 "$scenario" 'crm_kpi.refresh()' "$rep" 'SELECT bench.kpi_engine(false)'
				else
					kpi_timed 1 "$scenario" sales_daily "$rep" "SELECT bench.kpi_refresh_mvs(true, '{sales_daily}')"
					kpi_timed 1 "$scenario" service_daily "$rep" "SELECT bench.kpi_refresh_mvs(true, '{service_daily}')"
				fi
			done
		done
		say "KPI part 1, $scenario: ${SECONDS}s"
	done
	psql_db -c "INSERT INTO bench.meta SELECT 'kpi_diff_1_' || t, bench.kpi_mv_diff(t)::text
	            FROM unnest('{sales_daily,service_daily}'::name[]) t"
}

# 3. From scratch, all tables; the last round rebuilds first, so that the views
# (which take crm_kpi's instant) can then be compared with the tables.
kpi_part_rebuild() {
	local rep c
	SECONDS=0
	for rep in $(seq 1 "$KPI_REPS"); do
		printf '%s\n' "SELECT format('VACUUM %s, crm_kpi.%I', mv, table_name) FROM bench.kpi_mv" '\gexec' | psql_db >/dev/null
		for c in $(kpi_order $((KPI_REPS - rep)) rebuild exclusive mv); do
			if [ "$c" = rebuild ]; then
				kpi_timed 3 full 'crm_kpi.rebuild()' "$rep" 'SELECT bench.kpi_engine(true)'
			elif [ "$c" = exclusive ]; then
				kpi_timed 3 full 'crm_kpi.rebuild(concurrently => false)' "$rep" 'SELECT bench.kpi_engine(true, false)'
			else
				kpi_timed 3 full 'REFRESH MATERIALIZED VIEW' "$rep" 'SELECT bench.kpi_refresh_mvs(false)'
			fi
		done
	done
	psql_db -c "INSERT INTO bench.meta SELECT 'kpi_diff_3_' || table_name, bench.kpi_mv_diff(table_name)::text
	            FROM bench.kpi_mv"
	printf '%s\n' "SELECT format('INSERT INTO bench.meta SELECT %L, count(*) FROM crm_kpi.%I', 'kpi_count_' || table_name,
	                              table_name) FROM bench.kpi_mv" '\gexec' | psql_db >/dev/null
	# Memory follows the settings, not the data: once more each, with a quarter of work_mem and
	# maintenance_work_mem (the same data).
	kpi_timed 3 quarter 'crm_kpi.rebuild()' 1 'SELECT bench.kpi_engine(true)' "$KPI_QUARTER"
	kpi_timed 3 quarter 'crm_kpi.rebuild(concurrently => false)' 1 'SELECT bench.kpi_engine(true, false)' "$KPI_QUARTER"
	kpi_timed 3 quarter 'REFRESH MATERIALIZED VIEW' 1 'SELECT bench.kpi_refresh_mvs(false)' "$KPI_QUARTER"
	say "KPI part 3: ${SECONDS}s"
}

# 2. Capture overhead: bulk loads, then pgbench; a warm-up round first. The
# loaded rows stay until the end (the order of the arms alternates, so the
# growth of the table weighs on both alike); a checkpoint before each load.
kpi_part_capture() {
	local base method sql rep arm secs tps
	SECONDS=0
	base=$(psql_db -At -c 'SELECT max(order_id) FROM crm.orders')
	for method in insert copy; do
		if [ "$method" = insert ]; then
			sql='INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at) SELECT * FROM bench.kpi_load'
		else
			sql="COPY crm.orders (customer_id, rep_id, status, amount, ordered_at) FROM '$KPI_LOAD_FILE'"
		fi
		for rep in $(seq 0 "$KPI_CAPTURE_REPS"); do
			for arm in $(kpi_order "$rep" with without); do
				kpi_capture "$arm"
				psql_db -c CHECKPOINT
				kpi_timed 2 "$method" "$arm" "$rep" "$sql"
			done
		done
	done
	for rep in $(seq 0 "$KPI_CAPTURE_REPS"); do
		for arm in $(kpi_order "$rep" with without); do
			kpi_capture "$arm"
			secs=$KPI_PGBENCH_SECONDS
			[ "$rep" -eq 0 ] && secs=$(((secs + 3) / 4))
			tps=$(as_pg "$PG_BIN/pgbench" -n -c 4 -j 2 -T "$secs" -D customers="$KPI_CUSTOMERS" \
				-f "$STAGE/src/bench/kpi_pgbench.sql" -h "$STAGE" -p "$PORT" -U postgres "$DB" 2>&1 |
				sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')
			[ -n "$tps" ] || die "pgbench failed"
			psql_db -c "INSERT INTO bench.kpi_timing (part, scenario, contender, rep, tps)
			            VALUES (2, 'pgbench', '$arm', $rep, $tps)"
		done
	done
	# The loaded orders and their stale keys go (the KPI tables are as before part 2).
	kpi_capture without
	psql_db -c "DELETE FROM crm.orders WHERE order_id > $base" -c 'DELETE FROM crm_kpi.change_queue'
	kpi_capture with
	say "KPI part 2: ${SECONDS}s"
}

# The whole section; part 2 last, as it leaves millions of rows behind until its end.
kpi_section() {
	kpi_setup
	kpi_part_refresh
	kpi_part_rebuild
	kpi_part_capture
}
