-- rate: rates (win rate, conversion, resolution rate) in percent, checked against hand values.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
\i test/fixtures/recv.sql

-- Opportunities closed per day: won = true, lost = false (open ones are NULL and ignored).
CREATE TABLE opportunities (day date, won boolean);
INSERT INTO opportunities VALUES
    ('2024-03-01', true), ('2024-03-01', false), ('2024-03-01', false),
    ('2024-03-02', true), ('2024-03-02', NULL),
    ('2024-03-03', false);
-- By hand: day 1: 1/3 -> 33.33; day 2: 1/1 -> 100; day 3: 0/1 -> 0; all: 2/5 -> 40.

SELECT crm_kpi.rate(won) AS win_rate FROM opportunities;
SELECT day, round(crm_kpi.rate(won), 10) AS win_rate FROM opportunities GROUP BY day ORDER BY day;
CREATE TABLE rate_daily AS SELECT day, crm_kpi.rate_agg(won) AS s FROM opportunities GROUP BY day;
SELECT day, s, crm_kpi.successes(s), crm_kpi.trials(s), round(crm_kpi.rate(s), 10) AS rate
FROM rate_daily ORDER BY day;
SELECT crm_kpi.rollup(s) AS rolled_up,
       crm_kpi.rollup(s)::text = (SELECT crm_kpi.rate_agg(won)::text FROM opportunities) AS rollup_equals_one_step,
       crm_kpi.rate(crm_kpi.rollup(s)) = 40 AS forty_percent
FROM rate_daily;

-- Zero denominators give NULL.
SELECT crm_kpi.rate(won) IS NULL AS no_rows, crm_kpi.rate_agg(won) IS NULL AS no_rows_summary
FROM opportunities WHERE false;
SELECT crm_kpi.rate(won) IS NULL AS only_open FROM opportunities WHERE won IS NULL;
SELECT crm_kpi.rate('rate v1 successes=0 failures=0'::crm_kpi.rate_summary) IS NULL AS empty_summary;

-- Rolling 2-day window: day 1: 1/3; day 2: 2/4 -> 50; day 3: 1/2 -> 50.
SELECT DISTINCT day, round(crm_kpi.rate(won) OVER w, 10) AS rolling,
       round(100.0 * count(*) FILTER (WHERE won) OVER w / count(won) OVER w, 10) AS plain_sql
FROM opportunities
WINDOW w AS (ORDER BY day RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)
ORDER BY day;

-- Text and binary forms.
SELECT 'rate v1 successes=7 failures=3'::crm_kpi.rate_summary::text AS round_trip;
SELECT crm_kpi.rate_summary_send('rate v1 successes=7 failures=3') AS bytes;
SELECT t, pg_temp.sqlstate_of(format('SELECT %L::crm_kpi.rate_summary', t))
FROM (VALUES ('rate v1 successes=1'), ('rate v1 failures=1 successes=1'), ('rate v1 successes=1 failures=+'),
             ('rate v1 successes=0x10 failures=1')) v(t);
SELECT payload, pg_temp.recv_as('crm_kpi.rate_summary', payload::bytea)
FROM (VALUES ('\x01030703'), ('\x010307'), ('\x0103070300'), ('\x01030783')) v(payload);

-- Parallel plan equals serial.
CREATE TABLE rate_big AS SELECT i, (i * 7919) % 7 < 3 AS won FROM generate_series(1, 200000) i;
ANALYZE rate_big;
SELECT crm_kpi.rate(won) AS r, crm_kpi.rate_agg(won) AS s FROM rate_big \gset
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT crm_kpi.rate(won), crm_kpi.rate_agg(won) FROM rate_big;
SELECT crm_kpi.rate(won) = :'r' AS rate_equal, crm_kpi.rate_agg(won)::text = :'s' AS summary_equal,
       crm_kpi.rate(won) = 100.0 * count(*) FILTER (WHERE won) / count(*) AS matches_plain_sql
FROM rate_big;
RESET ALL;

DROP TABLE opportunities, rate_daily, rate_big;
DISCARD TEMP;
DROP EXTENSION crm_kpi;
