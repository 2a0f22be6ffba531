-- bind_watch.sql: DDL after which a bound source reads other values (a mapped column swapped for another of the
-- same name, a column type changed with USING, a bound view replaced, a partition attached or detached) queues a
-- rebuild, and the rebuild makes the KPI tables exact again; DDL that changes nothing a binding reads (a column
-- added, an index, a new empty partition) queues nothing. The rebuild queued is of the tables the source's kind feeds
-- (target * followed by the kind). Revenues are sums of the rows written here.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(21);
SET client_min_messages = warning;

CREATE TABLE cu (id bigint, created timestamptz, ch text);
CREATE TABLE od (id bigint, cust bigint, st text, amt numeric NOT NULL, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE od_2024 PARTITION OF od FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE ms (ch text, d date, amt numeric);
CREATE VIEW ms_view AS SELECT ch, d, amt FROM ms;
SELECT crm_kpi.bind_source('customers', 'cu', '{"customer_id": "id", "created_at": "created", "acquisition_channel": "ch"}');
SELECT crm_kpi.bind_source('orders', 'od', '{"order_id": "id", "customer_id": "cust", "status": "st",
                                              "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.bind_source('marketing_spend', 'ms_view', '{"channel": "ch", "day": "d", "amount": "amt"}');
INSERT INTO cu VALUES (1, '2024-01-01', 'web'), (2, '2024-01-01', 'ads');
INSERT INTO od VALUES (1, 1, 'completed', 100, '2024-01-10 12:00+00'), (2, 2, 'completed', 50, '2024-02-05 12:00+00');
INSERT INTO ms VALUES ('web', '2024-01-01', 500);
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

-- Whether a rebuild is queued, and only of the tables of that kind.
CREATE FUNCTION pg_temp.rebuild_queued(kind text) RETURNS boolean LANGUAGE sql AS $$
    SELECT array_agg(DISTINCT target) = ARRAY['*' || kind] FROM crm_kpi.change_queue WHERE left(target, 1) = '*'
$$;
CREATE FUNCTION pg_temp.revenue() RETURNS numeric LANGUAGE sql AS $$
    SELECT coalesce(sum(revenue), 0) FROM crm_kpi.sales_daily
$$;

-- Nothing a binding reads changes.
ALTER TABLE od ADD COLUMN note text;
CREATE INDEX ON od (cust);
CREATE TABLE od_2025 PARTITION OF od FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
ALTER TABLE ms ADD COLUMN note text;
SELECT ok(NOT EXISTS (SELECT FROM crm_kpi.change_queue WHERE left(target, 1) = '*'), 'a column added, an index, a new empty partition: no rebuild queued');
SELECT ok(crm_kpi.rebuild_reason() IS NULL, 'and no rebuild needed');

-- A mapped column renamed and another added in its name: reading the binding still works, but reads other values.
ALTER TABLE od RENAME COLUMN amt TO amt_old;
ALTER TABLE od ADD COLUMN amt numeric NOT NULL DEFAULT 7;
SELECT ok(pg_temp.rebuild_queued('orders'), 'a mapped column swapped for a new one of its name: rebuild queued');
SELECT is(crm_kpi.rebuild_reason(), 'a bound orders source was truncated, bound, unbound, or altered in what it reads: '
          'the next refresh rebuilds customer_stats, customer_spells, customer_days, sales_daily, sales_channel_daily, '
          'cohort_monthly, marketing_monthly, churn_monthly, customer_counts, customer_events_daily, rfm_cells, rfm_last_days, rfm_order_counts, rfm_month_cells',
          'the status says why, and which tables the next refresh rebuilds (those of the customers)');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the next refresh rebuilds');
SELECT is(pg_temp.revenue(), 14::numeric, 'revenue from the new column: 2 orders x 7');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- A type change with USING rewrites the table: same type, other values.
ALTER TABLE od ALTER COLUMN amt TYPE numeric USING amt * 3;
SELECT ok(pg_temp.rebuild_queued('orders'), 'a column rewritten with USING: rebuild queued');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the next refresh rebuilds');
SELECT is(pg_temp.revenue(), 42::numeric, 'revenue: 2 orders x 21');

-- A partition attached with its rows (no capture trigger saw them), then detached.
CREATE TABLE od_2023 (id bigint, cust bigint, st text, amt_old numeric NOT NULL, at timestamptz, note text,
                      amt numeric NOT NULL);
INSERT INTO od_2023 VALUES (3, 1, 'completed', 0, '2023-06-01 12:00+00', NULL, 1000);
ALTER TABLE od ATTACH PARTITION od_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
SELECT ok(pg_temp.rebuild_queued('orders'), 'a partition attached: rebuild queued');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the next refresh rebuilds');
SELECT is(pg_temp.revenue(), 1042::numeric, 'revenue with the attached partition''s order');
ALTER TABLE od DETACH PARTITION od_2023;
SELECT ok(pg_temp.rebuild_queued('orders'), 'a partition detached: rebuild queued');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the next refresh rebuilds');
SELECT is(pg_temp.revenue(), 42::numeric, 'revenue without it');

-- The bound view replaced by one reading other values.
CREATE OR REPLACE VIEW ms_view AS SELECT ch, d, amt * 2 AS amt FROM ms;
SELECT ok(pg_temp.rebuild_queued('marketing_spend'), 'the bound view replaced: rebuild queued');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the next refresh rebuilds');
SELECT is((SELECT sum(spend) FROM crm_kpi.marketing_monthly), 1000::numeric, 'spend read through the new view: 500 x 2');
SELECT is((SELECT tables FROM crm_kpi.refresh_history ORDER BY run_id DESC LIMIT 1),
          jsonb_build_object('marketing_monthly', 2 * (SELECT count(*) FROM crm_kpi.marketing_monthly)),
          'and only marketing_monthly was rebuilt (each of its rows deleted and written again)');

SELECT * FROM finish();
ROLLBACK;
