-- sketch: crm_kpi.sketch, the mergeable percentile sketch. Expected values are
-- computed by hand: with relative error a = 0.01, gamma = 1.01/0.99 and
-- ln(gamma) = 0.0200006667; x > 0 goes to bucket ceil(ln x / ln gamma), whose
-- estimate is 2 gamma^i / (gamma + 1) = 0.99 gamma^i.
CREATE EXTENSION crm_kpi;
SET extra_float_digits = 0;

-- SQLSTATE, message and detail of a statement's error, or 'ok'.
CREATE FUNCTION pg_temp.sqlstate_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE query;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || coalesce(nullif(' (' || detail || ')', ' ()'), '');
END $$;

-- SQLSTATE and detail of the error reading a text as a sketch (the message
-- repeats the input), or 'ok'.
CREATE FUNCTION pg_temp.text_error(input text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    PERFORM input::crm_kpi.sketch;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || detail;
END $$;

-- Feed bytes to crm_kpi.sketch's binary input, as a client sending a binary
-- parameter would (a one-row binary COPY file); the value as text, or the error.
CREATE FUNCTION pg_temp.from_wire(payload bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    f text := 'sketch_wire_' || pg_backend_pid() || '.copy';
    lo oid;
    r text;
    detail text;
BEGIN
    lo := lo_from_bytea(0, '\x5047434f50590aff0d0a00'::bytea || '\x0000000000000000'::bytea
        || '\x0001'::bytea || int4send(length(payload)) || payload || '\xffff'::bytea);
    PERFORM lo_export(lo, f);
    PERFORM lo_unlink(lo);
    CREATE TEMP TABLE wire (s crm_kpi.sketch);
    EXECUTE format('COPY wire FROM %L (FORMAT binary)', f);
    SELECT s::text INTO r FROM wire;
    DROP TABLE wire;
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' (' || detail || ')';
END $$;

-- Five values: -5 (bucket 81 of the negative store), 0, 1 (bucket 0),
-- 2 (bucket ceil(34.66) = 35), 3 (bucket ceil(54.93) = 55).
CREATE TEMP TABLE five AS SELECT crm_kpi.sketch_agg(x) AS s
FROM (VALUES (1::float8), (2), (3), (0), (-5), (NULL)) v(x);
SELECT s FROM five;
SELECT crm_kpi.count(s), crm_kpi.min(s), crm_kpi.max(s), crm_kpi.sum(s), crm_kpi.mean(s),
       crm_kpi.relative_error(s)
FROM five;
-- percentile_cont ranks r = q * 4: q = 0 and 1 are the exact min and max;
-- q = 0.1: -5 + 0.4 * (0 - -5) = -3; q = 0.25: the zero; q = 0.5: bucket 0,
-- 0.99; q = 0.75: bucket 35, 0.99 * gamma^35 = 1.9936617; q = 0.875: halfway
-- between 1.9936617 and the exact max 3, 2.4968309.
SELECT q, round(crm_kpi.percentile(s, q)::numeric, 7) AS estimate,
       (SELECT percentile_cont(q) WITHIN GROUP (ORDER BY x)
        FROM (VALUES (1::float8), (2), (3), (0), (-5)) v(x)) AS exact
FROM five, unnest(ARRAY[0, 0.1, 0.25, 0.5, 0.75, 0.875, 1]::float8[]) q;
SELECT round(u::numeric, 7) FROM five, unnest(crm_kpi.percentile(s, ARRAY[0, 0.5, 0.75, 1]::float8[])) u;
SELECT crm_kpi.percentile(s, ARRAY[]::float8[]) AS empty,
       crm_kpi.percentile(s, '[2:3]={0,1}'::float8[]) AS bounds_kept
FROM five;

-- One and two values are exact, like percentile_cont.
SELECT crm_kpi.percentile(crm_kpi.sketch_agg(x), 0.3) FROM (VALUES (7.25::float8)) v(x);
SELECT crm_kpi.percentile(crm_kpi.sketch_agg(x), 0.3),
       percentile_cont(0.3) WITHIN GROUP (ORDER BY x)
FROM (VALUES (10::float8), (-2.5)) v(x);

-- The sum is exact: 0.1 + 0.2 + 0.3 is 0x4ccccccccccccd * 2^-55 =
-- 0.6000000000000000888 (not the 0.6000000000000001 of a rounding loop).
SELECT crm_kpi.sketch_agg(x) FROM (VALUES (0.1::float8), (0.2), (0.3)) v(x);
SELECT crm_kpi.sum(crm_kpi.sketch_agg(x)) = 0.6::float8 AS exact_sum,
       (SELECT sum(x) FROM (VALUES (0.1::float8), (0.2), (0.3)) w(x)) = 0.6::float8 AS float_sum
FROM (VALUES (0.1::float8), (0.2), (0.3)) v(x);
-- ... and does not depend on order: 1e308 + 1e308 - 1e308 overflows a double.
SELECT crm_kpi.sum(crm_kpi.sketch_agg(x ORDER BY o)) AS sum, crm_kpi.mean(crm_kpi.sketch_agg(x)) AS mean
FROM (VALUES (1, 1e308::float8), (2, 1e308), (3, -1e308)) v(o, x);
-- -0.0 counts as a zero; -1e-10 goes to the negative store, bucket
-- ceil(-23.0258509 / 0.0200006667) = ceil(-1151.25) = -1151; 1e10 to 1152.
SELECT crm_kpi.sketch_agg(x) FROM (VALUES (1e10::float8), (-1e-10), (-0.0::float8)) v(x);

-- No rows, or only NULLs: NULL.
SELECT crm_kpi.sketch_agg(x) IS NULL AS no_rows FROM (SELECT 1::float8 WHERE false) v(x);
SELECT crm_kpi.sketch_agg(NULL::float8) IS NULL AS only_nulls FROM generate_series(1, 3);
SELECT crm_kpi.approx_percentile(x, 0.5) IS NULL AS no_rows FROM (SELECT 1::float8 WHERE false) v(x);
SELECT crm_kpi.rollup(s) IS NULL AS rollup_of_nulls FROM (VALUES (NULL::crm_kpi.sketch)) v(s);

-- Another relative error: a = 0.1, ln(gamma) = ln(1.1/0.9) = 0.2006707; 5 goes
-- to ceil(1.6094379 / 0.2006707) = ceil(8.02) = 9, estimate 0.9 * gamma^9 = 5.4776;
-- 100 to ceil(4.6051702 / 0.2006707) = ceil(22.95) = 23.
SELECT s, crm_kpi.relative_error(s), round(crm_kpi.percentile(s, 0.5)::numeric, 4)
FROM (SELECT crm_kpi.sketch_agg(x, 0.1) AS s FROM (VALUES (1::float8), (5), (100)) v(x)) t;

-- Intervals are counted in seconds, as extract(epoch from ...): a month is
-- 30.4375 days (2629800 s). percentile_interval gives seconds as an interval.
CREATE TEMP TABLE waits AS SELECT crm_kpi.sketch_agg(w) AS s
FROM (VALUES (interval '1 hour'), (interval '2 days'), (interval '1 month'), (NULL)) v(w);
SELECT s FROM waits;
SELECT crm_kpi.percentile_interval(s, 0) AS p0, crm_kpi.percentile_interval(s, 1) AS p100,
       crm_kpi.min(s), crm_kpi.max(s), crm_kpi.mean(s)
FROM waits;
-- The median, 2 days = 172800 s, is within 1 %.
SELECT abs(extract(epoch FROM crm_kpi.percentile_interval(s, 0.5)) - 172800) <= 0.01 * 172800 AS median_within_bound
FROM waits;
SELECT crm_kpi.sketch_agg(w, 0.05) FROM (VALUES (interval '90 seconds')) v(w);

-- One-step percentile: the same estimate as the sketch's.
SELECT crm_kpi.approx_percentile(x, 0.75) AS one_step,
       crm_kpi.percentile(crm_kpi.sketch_agg(x), 0.75) AS two_step
FROM (VALUES (1::float8), (2), (3), (0), (-5)) v(x);

-- Text round trip is exact; binary round trip too.
SELECT s::text::crm_kpi.sketch::text = s::text AS text_round_trip,
       pg_temp.from_wire(crm_kpi.sketch_send(s)) = s::text AS binary_round_trip
FROM (SELECT crm_kpi.sketch_agg(x, 0.02) AS s FROM (VALUES (-1e-5::float8), (0), (3.14159), (2e10), (0.1)) v(x)) t;
SELECT crm_kpi.sketch_send(crm_kpi.sketch_agg(x)) FROM (VALUES (1::float8), (2), (3)) v(x);

-- Order independence: the same multiset in any order, and through rollups of
-- any partition, gives the same bytes.
CREATE TABLE sketch_events AS
SELECT date '2026-01-01' + (i % 30) AS day, ((i * 7919) % 1000) / 7.0 - 40 + (i % 3) * 1e-3 AS v
FROM generate_series(1, 3000) i;
SELECT (SELECT crm_kpi.sketch_send(crm_kpi.sketch_agg(v ORDER BY v)) FROM sketch_events)
     = (SELECT crm_kpi.sketch_send(crm_kpi.sketch_agg(v ORDER BY v DESC)) FROM sketch_events) AS orders_agree;
CREATE TEMP TABLE daily AS SELECT day, crm_kpi.sketch_agg(v) AS s FROM sketch_events GROUP BY day;
SELECT (SELECT crm_kpi.sketch_send(crm_kpi.rollup(s ORDER BY day DESC)) FROM daily)
     = (SELECT crm_kpi.sketch_send(crm_kpi.sketch_agg(v)) FROM sketch_events) AS days_roll_up_exactly;
SELECT (SELECT crm_kpi.sketch_send(crm_kpi.rollup(s)) FROM
          (SELECT crm_kpi.sketch_agg(v) AS s FROM sketch_events GROUP BY v > 10) a)
     = (SELECT crm_kpi.sketch_send(crm_kpi.rollup(s)) FROM
          (SELECT crm_kpi.rollup(s) AS s FROM daily GROUP BY extract(dow FROM day)) b) AS partitions_agree;

-- Collapse: 1e-300 .. 1e300 with a = 0.001 (ln gamma = 0.0020000007) runs
-- over level-0 buckets -345387 .. 345388: 690776 of them. 2^9 is the least
-- power of two bringing them within 2048: level 9, buckets ceil(-345387/512)
-- = -674 .. ceil(345388/512) = 675. The bound becomes that of gamma^512:
-- tanh(256 ln gamma) = tanh(0.5120002) = 0.4715.
CREATE TEMP TABLE wide_values AS SELECT i, 10::float8 ^ (i / 100.0) AS x FROM generate_series(-30000, 30000) i;
CREATE TEMP TABLE wide AS SELECT crm_kpi.sketch_agg(x, 0.001) AS s,
       crm_kpi.sketch_agg(x, 0.001 ORDER BY i DESC) AS s_desc
FROM wide_values;
SELECT crm_kpi.count(s), crm_kpi.min(s), crm_kpi.max(s), round(crm_kpi.relative_error(s)::numeric, 4) AS bound,
       crm_kpi.sketch_send(s) = crm_kpi.sketch_send(s_desc) AS order_independent,
       substring(s::text from 'level=[0-9]+') AS level, substring(s::text from 'pos=(-?[0-9]+):') AS first_bucket,
       substring(s::text from ',(-?[0-9]+):[0-9]+$') AS last_bucket
FROM wide;
-- Every percentile stays within the reported bound of percentile_cont's neighbours.
WITH sorted AS (SELECT array_agg(x ORDER BY x) AS xs, count(*) AS n FROM wide_values),
est AS (SELECT q / 100.0 AS q, crm_kpi.percentile(s, q / 100.0) AS est, crm_kpi.relative_error(s) AS bound
        FROM wide, generate_series(0, 100) q)
SELECT count(*) AS checked,
       count(*) FILTER (WHERE abs(est - exact) > bound * greatest(abs(lo), abs(hi)) * (1 + 1e-9)) AS violations
FROM est, sorted,
     LATERAL (SELECT xs[floor(q * (n - 1))::int + 1] AS lo, xs[ceil(q * (n - 1))::int + 1] AS hi,
                     (SELECT percentile_cont(q) WITHIN GROUP (ORDER BY x) FROM wide_values) AS exact) e;
-- Merging a narrow sketch into a collapsed one brings it to the higher level.
SELECT crm_kpi.sketch_send(crm_kpi.rollup(x)) = (SELECT crm_kpi.sketch_send(crm_kpi.sketch_agg(v, 0.001))
        FROM (SELECT x FROM wide_values UNION ALL SELECT 5) w(v)) AS merged
FROM (SELECT s FROM wide UNION ALL SELECT crm_kpi.sketch_agg(5::float8, 0.001)) t(x);

-- Parallel plans give the same bytes as serial ones.
CREATE TABLE sketch_par AS
SELECT (i % 100) AS g, ((i * 2654435761) % 1000003) / 1000.0 - 200 AS v, i * interval '1 second' AS w
FROM generate_series(1, 200000) i;
ANALYZE sketch_par;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE serial AS
SELECT crm_kpi.sketch_agg(v) AS s, crm_kpi.sketch_agg(w) AS sw, crm_kpi.approx_percentile(v, 0.9) AS p90
FROM sketch_par;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT crm_kpi.sketch_agg(v) FROM sketch_par;
EXPLAIN (COSTS OFF) SELECT crm_kpi.approx_percentile(v, 0.9) FROM sketch_par;
EXPLAIN (COSTS OFF) SELECT crm_kpi.rollup(s) FROM (SELECT crm_kpi.sketch_agg(v) AS s FROM sketch_par GROUP BY g) t;
SELECT crm_kpi.sketch_send(p.s) = crm_kpi.sketch_send(serial.s) AS sketch_same,
       crm_kpi.sketch_send(p.sw) = crm_kpi.sketch_send(serial.sw) AS interval_sketch_same,
       p.p90 = serial.p90 AS approx_same
FROM serial, (SELECT crm_kpi.sketch_agg(v) AS s, crm_kpi.sketch_agg(w) AS sw,
                     crm_kpi.approx_percentile(v, 0.9) AS p90 FROM sketch_par) p;
CREATE TEMP TABLE by_group AS SELECT g, crm_kpi.sketch_agg(v) AS s FROM sketch_par GROUP BY g;
CREATE TABLE sketch_par_groups AS SELECT * FROM by_group;
SELECT crm_kpi.sketch_send(crm_kpi.rollup(s)) = (SELECT crm_kpi.sketch_send(s) FROM serial) AS parallel_rollup_same
FROM sketch_par_groups;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- Bad arguments.
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(x) FROM (VALUES ('NaN'::float8)) v(x)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(x) FROM (VALUES (1::float8), ('Infinity')) v(x)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.approx_percentile(x, 0.5) FROM (VALUES ('-Infinity'::float8)) v(x)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(1::float8, 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(1::float8, 1)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(1::float8, 'NaN')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(1::float8, 1e-10)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(1::float8, NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg('1 day'::interval, -0.5)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.sketch_agg(x, x / 10) FROM (VALUES (0.1::float8), (0.2)) v(x)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.percentile(s, 1.5) FROM five$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.percentile(s, -0.01) FROM five$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.percentile(s, 'NaN'::float8) FROM five$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.percentile(s, ARRAY[0.5, 2]) FROM five$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.percentile(s, ARRAY[0.5, NULL]) FROM five$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.percentile_interval(s, 0.5) FROM five$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.approx_percentile(x, x / 10) FROM (VALUES (1::float8), (2)) v(x)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.approx_percentile(1::float8, 1.01)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.approx_percentile(1::float8, NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.rollup(s) FROM (SELECT crm_kpi.sketch_agg(1::float8) UNION ALL SELECT crm_kpi.sketch_agg(1::float8, 0.02)) t(s)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.rollup(s) FROM (SELECT crm_kpi.sketch_agg(1::float8) UNION ALL SELECT crm_kpi.sketch_agg('1 s'::interval)) t(s)$$);

-- Bad text input: 22P02.
SELECT pg_temp.text_error(t) FROM (VALUES
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  (''),
  ('nps v1 values=double'),
  ('sketch v2 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=text alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=NaN level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=63 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=4 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=-1 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=3 max=1 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=Infinity sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=-1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=6 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x6p+0 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p-1075 neg=none pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,55:1,35:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,35:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:0,55:2'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,5500:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,999999999999:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1;35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos='),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 pos=0:1,35:1,55:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,55:1 extra=1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=0 zeros=0 min=0 max=0 sum=0x0p+0 neg=none pos=none'),
  ('sketch v1 values=double alpha=0.01 level=0 count=1 zeros=0 min=2 max=2 sum=0x1p+0 neg=none pos=35:1'),
  ('sketch v1 values=double alpha=0.01 level=0 count=1 zeros=0 min=-0 max=-0 sum=0x0p+0 neg=none pos=none'),
  ('sketch v1 values=double alpha=0.01 level=0 count=3 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos=0:1,35:1,' || repeat('1', 30) || ':1')
) v(t);
SELECT pg_temp.text_error(
    'sketch v1 values=double alpha=0.01 level=0 count=3000 zeros=0 min=1 max=3 sum=0x3p+1 neg=none pos='
    || (SELECT string_agg(i || ':1', ',') FROM generate_series(1, 3000) i));

-- Bad binary input: 22P03. The valid bytes of {1, 2, 3}, then each broken.
SELECT pg_temp.from_wire(b) FROM (VALUES
  ('\x0105007b14ae47e17a843f000300000000000000f03f00000000000008400001218080600003000123011401'::bytea),
  ('\x0105007b14ae47e17a843f000300000000000000f03f000000000000084000012180806000030001230114'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f0000000000000840000121808060000300012301140100'),
  ('\x0205007b14ae47e17a843f000300000000000000f03f00000000000008400001218080600003000123011401'),
  ('\x0101007b14ae47e17a843f000300000000000000f03f00000000000008400001218080600003000123011401'),
  ('\x0105027b14ae47e17a843f000300000000000000f03f00000000000008400001218080600003000123011401'),
  ('\x0105007b14ae47e17a843f000400000000000000f03f00000000000008400001218080600003000123011401'),
  ('\x0105007b14ae47e17a843f00830000000000000000f03f00000000000008400001218080600003000123011401'),
  ('\x0105007b14ae47e17a843f3f0300000000000000f03f00000000000008400001218080600003000123011401'),
  ('\x0105007b14ae47e17a843f0003000000000000000840000000000000f03f0001218080600003000123011401'),
  ('\x0105007b14ae47e17a843f000300000000000000f87f00000000000008400001218080600003000123011401'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f00000000000008400001218080600003000100011401'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f0000000000000840000121808060000300012300141401'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f000000000000084000012180806000ffffffffffffffffff01'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f00000000000008400001218080600003fefffffffffffffffe010123011401'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f0000000000000840000144808060000300012301140100'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f00000000000008400001218080e0000003000123011401'),
  ('\x0105007b14ae47e17a843f000300000000000000f03f0000000000000840000221808060000003000123011401'),
  ('\x0105'),
  ('\x')
) v(b);
DROP TABLE sketch_events, sketch_par, sketch_par_groups;
SET client_min_messages = warning;
DROP EXTENSION crm_kpi CASCADE;
