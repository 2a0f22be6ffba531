# panels.sh: the Grafana panel section of scripts/bench.sh, sourced by it (uses QUICK, STAGE, PORT,
# psql_pg, as_pg, say, die). In a database of its own, crm_kpi_panels: three years of generated CRM
# data (a tenth of the customers with --quick) and their KPI tables; then every panel query of
# grafana/dashboards, expanded as Grafana sends it (bench/panels_expand.pl), timed against the
# same panel computed from the source tables (bench/panels_raw.sql), and both results compared
# (bench/panels.sql). Prints a markdown section on stdout (bench/panels_report.sql).
# shellcheck shell=bash

PANEL_DB=crm_kpi_panels
PANEL_DAYS=1095

psql_panels() { psql_pg -d "$PANEL_DB" "$@"; }

# The data: the reference schema filled by the generator (capture triggers off while it loads),
# then the KPI tables built once, everything analyzed.
panels_setup() {
	local customers=$1
	say "panels: generating $PANEL_DAYS days of CRM data ($customers customers) and building the KPI tables"
	SECONDS=0
	psql_pg -d postgres -c "CREATE DATABASE $PANEL_DB" -c "ALTER DATABASE $PANEL_DB SET TimeZone = 'UTC'"
	psql_panels -c 'CREATE EXTENSION crm_kpi' -f "$STAGE/src/bench/panels.sql" >/dev/null
	psql_panels >/dev/null <<SQL
SET client_min_messages = warning;
SELECT crm_kpi.create_reference_schema('crm');
SELECT format('ALTER TABLE %s DISABLE TRIGGER USER', source) FROM crm_kpi.source_bindings \gexec
INSERT INTO bench.meta
SELECT 'panel_rows_' || table_name, row_count::text
FROM crm_kpi.generate_sample_data('crm', $customers, 1, current_date - $PANEL_DAYS, $PANEL_DAYS);
SELECT format('ALTER TABLE %s ENABLE TRIGGER USER', source) FROM crm_kpi.source_bindings \gexec
SELECT mode, error FROM crm_kpi.rebuild();
VACUUM ANALYZE;
INSERT INTO bench.meta VALUES
	('panel_days', '$PANEL_DAYS'), ('panel_customers', '$customers'),
	('panel_orders', (SELECT count(*)::text FROM crm.orders)),
	('panel_sources_size', (SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid)))
	                        FROM pg_class c WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r')),
	('panel_kpi_size', (SELECT pg_size_pretty(sum(pg_total_relation_size(format('crm_kpi.%I', table_name)::regclass)))
	                    FROM crm_kpi.kpi_tables)),
	('panel_sales_daily_rows', (SELECT count(*)::text FROM crm_kpi.sales_daily)),
	('panel_customer_stats_rows', (SELECT count(*)::text FROM crm_kpi.customer_stats));
SQL
	psql_panels -At -c "SELECT count(*) FROM crm_kpi.verify()" | grep -qx 0 \
		|| die "panels: the KPI tables differ from the sources after the build"
	say "panels: data and KPI tables ready in ${SECONDS}s"
}

# The whole section; markdown on stdout.
panels_section() {
	local customers kpi_reps=15 raw_reps=5 budget='20 seconds'
	# A tenth of the customers with --quick, as the KPI-table section (a full run: ~15M orders).
	if [ "$QUICK" -eq 1 ]; then customers=807000; else customers=8070000; fi
	panels_setup "$customers"
	as_pg perl -I "$STAGE/src/test/tap" "$STAGE/src/bench/panels_expand.pl" "$STAGE/src" "$PANEL_DAYS" -- \
		psql -h "$STAGE" -p "$PORT" -U postgres -d "$PANEL_DB" >"$STAGE/panels_queries.sql" \
		|| die "panels: expanding the dashboards' queries failed"
	psql_panels -f "$STAGE/panels_queries.sql" >/dev/null
	psql_panels -c "INSERT INTO bench.meta VALUES ('panel_kpi_reps', '$kpi_reps'), ('panel_raw_reps', '$raw_reps'),
	                ('panel_budget', '$budget')" >/dev/null
	say "panels: timing $(psql_panels -At -c 'SELECT count(*) FROM bench.panel') panel queries and their raw equivalents"
	SECONDS=0
	psql_panels -c "CALL bench.panel_run($kpi_reps, $raw_reps, '$budget')" 2>&1 >/dev/null | sed -un 's/^.*NOTICE: */  /p; /ERROR/p' >&2
	say "panels: ${SECONDS}s"
	psql_panels -f "$STAGE/src/bench/panels_report.sql"
}
