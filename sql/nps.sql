-- nps: Net Promoter Score, one-step and two-step, checked against hand-computed values.
-- KPI_SPEC: NPS = % promoters (9-10) - % detractors (0-6) over scores 0-10.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
\i test/fixtures/recv.sql

CREATE TABLE nps_responses (day date, score integer);
INSERT INTO nps_responses VALUES
    ('2024-01-01', 10), ('2024-01-01', 9), ('2024-01-01', 8), ('2024-01-01', 6), ('2024-01-01', 0),
    ('2024-01-02', 10), ('2024-01-02', 10), ('2024-01-02', 7), ('2024-01-02', NULL),
    ('2024-01-03', 3);
-- By hand: day 1: P=2 passive=1 D=2 n=5 -> 0; day 2: P=2 passive=1 D=0 n=3 -> 66.67;
-- day 3: D=1 n=1 -> -100; all: P=4 passive=2 D=3 n=9 -> 100/9 = 11.11.

SELECT round(crm_kpi.nps(score), 10) AS nps_all FROM nps_responses;
SELECT day, round(crm_kpi.nps(score), 10) AS nps FROM nps_responses GROUP BY day ORDER BY day;
SELECT crm_kpi.nps(score) = 100.0 / 9 AS exact_all FROM nps_responses;

-- Two-step: per-day summaries, their text form, and accessors.
CREATE TABLE nps_daily AS SELECT day, crm_kpi.nps_agg(score) AS s FROM nps_responses GROUP BY day;
SELECT day, s, crm_kpi.promoters(s), crm_kpi.passives(s), crm_kpi.detractors(s), crm_kpi.responses(s),
       round(crm_kpi.nps(s), 10) AS nps
FROM nps_daily ORDER BY day;

-- The rollup of the days is exactly the one-step aggregate over all rows.
SELECT crm_kpi.rollup(s) AS rolled_up FROM nps_daily;
SELECT crm_kpi.rollup(s)::text = (SELECT crm_kpi.nps_agg(score)::text FROM nps_responses) AS rollup_equals_one_step,
       crm_kpi.nps(crm_kpi.rollup(s)) = (SELECT crm_kpi.nps(score) FROM nps_responses) AS same_nps
FROM nps_daily;

-- Edge cases: no rows and only NULLs give NULL; all promoters 100, all detractors -100.
SELECT crm_kpi.nps(score) IS NULL AS no_rows, crm_kpi.nps_agg(score) IS NULL AS no_rows_summary
FROM nps_responses WHERE false;
SELECT crm_kpi.nps(score) IS NULL AS only_nulls FROM nps_responses WHERE score IS NULL;
SELECT crm_kpi.nps(s) AS all_promoters FROM (VALUES (9), (10)) v(s);
SELECT crm_kpi.nps(s) AS all_detractors FROM (VALUES (0), (6)) v(s);
SELECT crm_kpi.nps(s) AS all_passives FROM (VALUES (7), (8)) v(s);
SELECT crm_kpi.rollup(s) IS NULL AS rollup_of_nothing FROM nps_daily WHERE false;
SELECT crm_kpi.nps('nps v1 promoters=0 passives=0 detractors=0'::crm_kpi.nps_summary) IS NULL AS empty_summary;

-- Rolling 2-day NPS as a window (moving aggregate), against hand values and plain SQL:
-- day 1: 0; day 2 (days 1-2): P=4 D=2 n=8 -> 25; day 3 (days 2-3): P=2 D=1 n=4 -> 25.
SELECT DISTINCT day, crm_kpi.nps(score) OVER w AS rolling_nps,
       100.0 * (count(*) FILTER (WHERE score >= 9) OVER w - count(*) FILTER (WHERE score <= 6) OVER w)
           / count(score) OVER w AS plain_sql
FROM nps_responses
WINDOW w AS (ORDER BY day RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)
ORDER BY day;
SELECT DISTINCT day, crm_kpi.nps_agg(score) OVER (ORDER BY day RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW)::text
FROM nps_responses ORDER BY day;

-- Bad scores: SQLSTATE 22003 naming the value and the range.
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.nps(s) FROM (VALUES (5), (11)) v(s)');
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.nps(-1)');
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.nps_agg(2147483647)');

-- Text input: round trip, and every malformed form rejected with 22P02.
SELECT 'nps v1 promoters=3 passives=0 detractors=1'::crm_kpi.nps_summary::text::crm_kpi.nps_summary AS round_trip;
SELECT t, pg_temp.sqlstate_of(format('SELECT %L::crm_kpi.nps_summary', t))
FROM (VALUES ('nps v2 promoters=1 passives=0 detractors=0'),
             ('csat v1 promoters=1 passives=0 detractors=0'),
             ('nps v1 promoters=1 passives=0'),
             ('nps v1 promoters=1 detractors=0 passives=0'),
             ('nps v1 promoters=-1 passives=0 detractors=0'),
             ('nps v1 promoters=1 passives=0 detractors=0 extra=1'),
             ('nps v1 promoters=1x passives=0 detractors=0'),
             ('nps v1 promoters= passives=0 detractors=0'),
             ('nps v1 promoters=99999999999999999999 passives=0 detractors=0'),
             ('nps v1 promoters=9223372036854775807 passives=1 detractors=0'),
             ('nps v1  promoters=1 passives=0 detractors=0'),
             (''), ('nps'), ('nps v'), ('nps v1')) v(t);

-- Binary I/O: send gives the canonical bytes (version 1, kind 1, LEB128 counts); recv round-trips
-- them and rejects corrupt ones with 22P03.
SELECT crm_kpi.nps_summary_send('nps v1 promoters=3 passives=0 detractors=300'::crm_kpi.nps_summary) AS bytes;
SELECT pg_temp.recv_as('crm_kpi.nps_summary', '\x010103008e02') AS received;
SELECT payload, pg_temp.recv_as('crm_kpi.nps_summary', payload::bytea)
FROM (VALUES ('\x'), ('\x01'), ('\x0101'), ('\x02010300ac02'), ('\x010203000001'), ('\x01010300'),
             ('\x010103008e0200'), ('\x01010380000001'), ('\x0101ffffffffffffffffff01'),
             ('\x0101ffffffffffffffff7f0000'), ('\x0101ffffffffffffffff7f0100')) v(payload);

-- Parallel plan: partial aggregation combines, serializes and deserializes states exactly.
CREATE TABLE nps_big AS SELECT i, (i * 7919) % 11 AS score FROM generate_series(1, 200000) i;
ANALYZE nps_big;
SELECT crm_kpi.nps(score) AS serial_nps, crm_kpi.nps_agg(score) AS serial_summary FROM nps_big \gset
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT crm_kpi.nps(score), crm_kpi.nps_agg(score) FROM nps_big;
SELECT crm_kpi.nps(score) = :'serial_nps' AS parallel_nps_equal,
       crm_kpi.nps_agg(score)::text = :'serial_summary' AS parallel_summary_equal,
       crm_kpi.nps(score) = (SELECT 100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)) / count(*) FROM nps_big) AS matches_plain_sql
FROM nps_big;
-- The rollup aggregate is parallel too.
CREATE TABLE nps_groups AS SELECT i % 1000 AS g, crm_kpi.nps_agg(score) AS s FROM nps_big GROUP BY 1;
ANALYZE nps_groups;
EXPLAIN (COSTS OFF) SELECT crm_kpi.rollup(s) FROM nps_groups;
SELECT crm_kpi.rollup(s)::text = :'serial_summary' AS parallel_rollup_equal FROM nps_groups;
RESET ALL;

DROP TABLE nps_responses, nps_daily, nps_big, nps_groups;
DISCARD TEMP;
DROP EXTENSION crm_kpi;
