-- kpi_data.sql: the KPI-table section's data: the reference CRM schema filled by
-- crm_kpi.generate_sample_data (seed 1, :days days up to yesterday, :customers
-- customers) with the capture triggers off, then on again and a first
-- crm_kpi.rebuild(); the materialized views, filled; the rows the bulk loads of
-- part 2 insert (:load_rows orders, also written to the file :'load_file').
SET client_min_messages = warning;
SELECT crm_kpi.create_reference_schema('crm');
SELECT crm_kpi.capture_detach(kind, source) FROM crm_kpi.source_bindings;
INSERT INTO bench.meta
SELECT 'kpi_rows_' || table_name, row_count::text
FROM crm_kpi.generate_sample_data('crm', :customers, 1, current_date - :days, :days);
SELECT crm_kpi.capture_attach(kind, source) FROM crm_kpi.source_bindings;
VACUUM (ANALYZE) crm.customers, crm.sales_reps, crm.opportunities, crm.orders, crm.interactions,
	crm.tickets, crm.survey_responses, crm.marketing_spend;

INSERT INTO bench.meta VALUES
	('kpi_days', :'days'),
	('kpi_start', (current_date - :days)::text),
	('kpi_generated_orders', (SELECT max(order_id)::text FROM crm.orders)),
	('kpi_orders_size', pg_size_pretty(pg_total_relation_size('crm.orders'))),
	('kpi_sources_size', (SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid)))
	                      FROM pg_class c WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'));

-- The first build (timed once, for the record: the parts below time rebuilds of their own).
SELECT bench.kpi_time(0, 'first build', 'crm_kpi.rebuild()', 1, 'SELECT bench.kpi_engine(true)');
-- (the queue too: the rebuild emptied it, and autovacuum, off here, would have cleaned it since)
VACUUM (ANALYZE) crm_kpi.change_queue, crm_kpi.customer_stats, crm_kpi.customer_spells, crm_kpi.customer_days,
	crm_kpi.sales_daily, crm_kpi.sales_channel_daily, crm_kpi.pipeline_total_daily, crm_kpi.pipeline_daily,
	crm_kpi.service_daily, crm_kpi.satisfaction_daily, crm_kpi.cohort_monthly, crm_kpi.marketing_monthly,
	crm_kpi.churn_monthly;

\ir kpi_mv.sql
SELECT bench.kpi_time(0, 'first build', 'materialized views', 1, 'SELECT bench.kpi_refresh_mvs(false)');
ANALYZE bench.mv_customer_stats, bench.mv_customer_spells, bench.mv_sales_daily, bench.mv_sales_channel_daily,
	bench.mv_pipeline_daily, bench.mv_pipeline_total_daily,
	bench.mv_service_daily, bench.mv_satisfaction_daily, bench.mv_cohort_monthly, bench.mv_marketing_monthly,
	bench.mv_churn_monthly;
INSERT INTO bench.meta
SELECT 'kpi_size_' || table_name,
       pg_size_pretty(pg_total_relation_size(format('crm_kpi.%I', table_name)::regclass))
FROM bench.kpi_mv;

-- Part 2's bulk load: orders of random customers on random days of the period.
SELECT setseed(0.44);
CREATE TABLE bench.kpi_load AS
SELECT 1 + floor(random() * :customers)::bigint AS customer_id,
       CASE WHEN random() < 0.7 THEN 1 + floor(random() * (SELECT max(rep_id) FROM crm.sales_reps))::bigint END AS rep_id,
       CASE WHEN random() < 0.95 THEN 'completed' ELSE 'refunded' END AS status,
       round((60 * exp(0.55 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::numeric, 2) AS amount,
       (current_date - :days)::timestamptz + random() * (:days * interval '1 day') AS ordered_at
FROM generate_series(1, :load_rows);
COPY bench.kpi_load TO :'load_file';
