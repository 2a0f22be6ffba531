-- csat: CSAT (top-two-box, % of 4-5 on 1-5) and the mean score, checked against hand values.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
\i test/fixtures/recv.sql

CREATE TABLE csat_responses (day date, score integer);
INSERT INTO csat_responses VALUES
    ('2024-02-01', 1), ('2024-02-01', 2), ('2024-02-01', 3), ('2024-02-01', 4),
    ('2024-02-02', 5), ('2024-02-02', 5), ('2024-02-02', NULL),
    ('2024-02-03', 4);
-- By hand: day 1: 1 of 4 satisfied -> 25, mean 10/4 = 2.5; day 2: 2 of 2 -> 100, mean 5;
-- day 3: 100, mean 4; all: 4 of 7 -> 57.142857..., mean 24/7 = 3.428571...

SELECT round(crm_kpi.csat(score), 10) AS csat, round(crm_kpi.csat_mean(score), 10) AS mean FROM csat_responses;
SELECT crm_kpi.csat(score) = 400.0 / 7 AS exact_csat, crm_kpi.csat_mean(score) = 24.0 / 7 AS exact_mean
FROM csat_responses;
SELECT day, crm_kpi.csat(score), crm_kpi.csat_mean(score) FROM csat_responses GROUP BY day ORDER BY day;

CREATE TABLE csat_daily AS SELECT day, crm_kpi.csat_agg(score) AS s FROM csat_responses GROUP BY day;
SELECT day, s, crm_kpi.responses(s), crm_kpi.satisfied(s), crm_kpi.score_count(s, 1) AS ones,
       crm_kpi.score_count(s, 5) AS fives, crm_kpi.csat(s), crm_kpi.csat_mean(s)
FROM csat_daily ORDER BY day;
SELECT crm_kpi.rollup(s) AS rolled_up,
       crm_kpi.rollup(s)::text = (SELECT crm_kpi.csat_agg(score)::text FROM csat_responses) AS rollup_equals_one_step,
       crm_kpi.csat(crm_kpi.rollup(s)) = (SELECT crm_kpi.csat(score) FROM csat_responses) AS same_csat,
       crm_kpi.csat_mean(crm_kpi.rollup(s)) = (SELECT crm_kpi.csat_mean(score) FROM csat_responses) AS same_mean
FROM csat_daily;

-- Edge cases.
SELECT crm_kpi.csat(score) IS NULL AS no_rows, crm_kpi.csat_mean(score) IS NULL AS no_rows_mean,
       crm_kpi.csat_agg(score) IS NULL AS no_rows_summary
FROM csat_responses WHERE false;
SELECT crm_kpi.csat(s) AS none_satisfied, crm_kpi.csat_mean(s) FROM (VALUES (1), (3)) v(s);
SELECT crm_kpi.csat('csat v1 s1=0 s2=0 s3=0 s4=0 s5=0'::crm_kpi.csat_summary) IS NULL AS empty_summary;

-- Rolling 2-day window (moving aggregate) against plain SQL:
-- day 1: 25 / 2.5; day 2 (days 1-2): 3 of 6 -> 50, mean 20/6; day 3 (days 2-3): 3 of 3 -> 100, mean 14/3.
SELECT DISTINCT day, crm_kpi.csat(score) OVER w AS rolling_csat,
       100.0 * count(*) FILTER (WHERE score >= 4) OVER w / count(score) OVER w AS plain_csat,
       crm_kpi.csat_mean(score) OVER w AS rolling_mean, avg(score) OVER w AS plain_mean
FROM csat_responses
WINDOW w AS (ORDER BY day RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)
ORDER BY day;

-- Bad scores and bad summaries.
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.csat(0)');
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.csat_mean(6)');
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.csat_agg(-3)');
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.score_count('csat v1 s1=1 s2=0 s3=0 s4=0 s5=0', 6)$$);
SELECT t, pg_temp.sqlstate_of(format('SELECT %L::crm_kpi.csat_summary', t))
FROM (VALUES ('csat v1 s1=1 s2=0 s3=0 s4=0'), ('csat v1 s1=1 s2=0 s3=0 s4=0 s5=-2'),
             ('nps v1 promoters=1 passives=0 detractors=0'), ('csat v1 s1=1 s2=0 s3=0 s4=0 s5=0 '),
             ('csat v0 s1=1 s2=0 s3=0 s4=0 s5=0')) v(t);
SELECT crm_kpi.csat_summary_send('csat v1 s1=1 s2=2 s3=3 s4=4 s5=5') AS bytes;
SELECT pg_temp.recv_as('crm_kpi.csat_summary', '\x01020102030405') AS received;
SELECT payload, pg_temp.recv_as('crm_kpi.csat_summary', payload::bytea)
FROM (VALUES ('\x010201020304'), ('\x0102010203040506'), ('\x01010102030405'), ('\x010201020304ff')) v(payload);

-- Parallel plan equals serial.
CREATE TABLE csat_big AS SELECT i, 1 + (i * 7919) % 5 AS score FROM generate_series(1, 200000) i;
ANALYZE csat_big;
SELECT crm_kpi.csat(score) AS c, crm_kpi.csat_mean(score) AS m, crm_kpi.csat_agg(score) AS s FROM csat_big \gset
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT crm_kpi.csat(score), crm_kpi.csat_mean(score), crm_kpi.csat_agg(score) FROM csat_big;
SELECT crm_kpi.csat(score) = :'c' AS csat_equal, crm_kpi.csat_mean(score) = :'m' AS mean_equal,
       crm_kpi.csat_agg(score)::text = :'s' AS summary_equal,
       crm_kpi.csat_mean(score) = avg(score) AS mean_matches_avg
FROM csat_big;
RESET ALL;

DROP TABLE csat_responses, csat_daily, csat_big;
DISCARD TEMP;
DROP EXTENSION crm_kpi;
