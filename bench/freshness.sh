# freshness.sh: the freshness section of scripts/bench.sh, sourced by it (uses QUICK, STAGE, PORT, DB,
# PG_BIN, psql_db, as_pg). With the background workers on at their default settings, pgbench inserts
# single-row orders at a steady rate while probes (bench/freshness.sql) time each change from commit
# until it is visible in crm_kpi.sales_daily. Prints a markdown table on stdout.
# shellcheck shell=bash

freshness_section() {
	local rate=200 seconds probes customers
	if [ "$QUICK" -eq 1 ]; then seconds=20 probes=40; else seconds=60 probes=150; fi
	customers=$(psql_db -At -c 'SELECT max(customer_id) FROM crm.customers')
	psql_db -f "$STAGE/src/bench/freshness.sql" >/dev/null
	# The workers run from here on (they stay off while the other parts time crm_kpi.refresh()).
	psql_db -c "ALTER SYSTEM SET crm_kpi.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
	psql_db -At -c "SELECT crm_kpi.wait_for_refresh('600 seconds')" | grep -qx t || die "the worker did not catch up"
	say "freshness: $rate single-row inserts per second for ${seconds}s, $probes probes"
	as_pg "$PG_BIN/pgbench" -n -c 2 -j 2 -R "$rate" -T "$seconds" -D customers="$customers" \
		-f "$STAGE/src/bench/freshness_load.sql" -h "$STAGE" -p "$PORT" -U postgres "$DB" >"$STAGE/freshness_pgbench.log" 2>&1 &
	local load=$! sampler
	# What the worker is doing, every 0.2 s: read back when a probe is not seen.
	while sleep 0.2; do
		psql_db -At -F " " -c "SELECT clock_timestamp()::time(1), state, wait_event_type, wait_event, left(query, 120)
		                FROM pg_stat_activity WHERE backend_type = 'crm_kpi worker'" || true
	done >"$STAGE/freshness_worker.log" 2>&1 &
	sampler=$!
	sleep 2
	if ! psql_db -c "CALL bench.freshness_probes($probes, '$(((seconds - 6) * 1000 / probes)) milliseconds')" >/dev/null; then
		kill "$sampler" "$load" 2>/dev/null || true
		say "the worker's activity, every 0.2 s, over the last 70 s (of $STAGE/freshness_worker.log):"
		tail -n 350 "$STAGE/freshness_worker.log" | uniq -c -f 1 >&2
		psql_db -c "SELECT run_id, mode, started_at::time(1), finished_at - started_at AS took, batches, stale_keys,
		                   rows_touched, pending_after, error FROM crm_kpi.refresh_history ORDER BY run_id DESC LIMIT 30" >&2
		die "a freshness probe was not seen in crm_kpi.sales_daily"
	fi
	kill "$sampler" 2>/dev/null || true
	wait "$load" || die "pgbench failed (see $STAGE/freshness_pgbench.log)"
	psql_db -c "ALTER SYSTEM RESET crm_kpi.enabled" -c "SELECT pg_reload_conf()" >/dev/null
	local tps
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$STAGE/freshness_pgbench.log")
	psql_db -At -c "
SELECT E'\n### Freshness: commit to visible in the KPI tables, with the background worker\n\n'
    || format(E'Under %s single-row order inserts per second (pgbench, measured %s tps) for %s s, %s probes each insert an order, '
              'commit, and poll crm_kpi.sales_daily every millisecond until it is counted; default settings '
              '(crm_kpi.naptime 1 s; the worker is woken at commit).\n\n', $rate, round($tps), $seconds, probes)
    || E'| probes | p50 ms | p95 ms | max ms | target p95 <= 2 s |\n|---:|---:|---:|---:|---|\n'
    || format('| %s | %s | %s | %s | %s |', probes, round(p50_ms::numeric, 1), round(p95_ms::numeric, 1),
              round(max_ms::numeric, 1), CASE WHEN p95_ms <= 2000 THEN 'holds' ELSE '**does not hold**' END)
FROM bench.freshness_figures"
}
