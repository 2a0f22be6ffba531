-- fuzz_regressions: the cases the hostile-input test (test/tap/006_fuzz.pl) found, each kept
-- here as it was found: a value the extension made or accepted that it could not read back,
-- and corrupt values it accepted.
CREATE EXTENSION crm_kpi;
\i test/fixtures/recv.sql
\set VERBOSITY default

-- A revenue longer than 1024 characters was summed, then unreadable (XX001 "A numeric field
-- has an impossible length"); any finite numeric now reads back.
SELECT length(crm_kpi.revenue(s)::text) AS revenue_digits,
       crm_kpi.revenue(s) = 1e1100 + 1 AS exact,
       s::text::crm_kpi.purchase_summary::text = s::text AS text_round_trip
FROM (SELECT crm_kpi.purchase_agg(x, '2000-01-01 00:00+00') FROM (VALUES (1e1100), (1)) v(x)) t(s);
SELECT crm_kpi.orders(('purchase v1 orders=1 revenue=' || repeat('9', 131072) || '.' || repeat('9', 16383)
                       || ' first=2000-01-01T00:00:00+00:00 last=2000-01-01T00:00:00+00:00')::crm_kpi.purchase_summary);

-- An order in a year BC printed as "... BC", whose space the text form could not read back
-- (so a dump of a table holding it would not restore); now "...+00:00BC".
SELECT s::text, s::text::crm_kpi.purchase_summary::text = s::text AS text_round_trip,
       crm_kpi.first_order(s) = '4713-01-01 00:00+00 BC' AS first_exact
FROM (SELECT crm_kpi.purchase_agg(x, t)
      FROM (VALUES (1, timestamptz '4713-01-01 00:00+00 BC'), (2, '0044-03-15 12:00+00 BC')) v(x, t)) u(s);
SET TimeZone = 'America/New_York';
SELECT 'purchase v1 orders=1 revenue=1 first=0001-01-01T00:00:00+00:00BC last=0001-01-01T00:00:00+00:00BC'::crm_kpi.purchase_summary;
RESET TimeZone;

-- Revenue bytes with a NUL inside ("1\0.5") read as "1": bytes that were not the value's.
SELECT pg_temp.recv_as('crm_kpi.purchase_summary', '\x01040104' || '\x31002e35'::bytea
                       || '\x0028283595b50200'::bytea || '\x0028283595b50200'::bytea);
SELECT pg_temp.recv_as('crm_kpi.purchase_summary', '\x01040104' || '\x312e3530'::bytea
                       || '\x0028283595b50200'::bytea || '\x0028283595b50200'::bytea);

-- The format version is digits right after "v": "v 1", "v+1", "v-1" are not version 1.
SELECT 'nps v 1 promoters=1 passives=0 detractors=0'::crm_kpi.nps_summary;
SELECT 'rate v+1 successes=1 failures=0'::crm_kpi.rate_summary;
SELECT 'nps v1 promoters=1 passives=0 detractors=0'::crm_kpi.nps_summary;

-- percentile(s, 1) is the maximum even when the count is near 2^63 (the rank q (n - 1) used
-- to round past the last one, out of int64: -0.99 here, not 1).
SELECT crm_kpi.percentile(s, 1) AS p100, crm_kpi.percentile(s, 0) AS p0,
       crm_kpi.percentile(s, 0.9999999999) AS p9999
FROM (VALUES ('sketch v1 values=double alpha=0.01 level=0 count=9223372036854775807 zeros=9223372036854775805 '
              'min=-1 max=1 sum=0x0p+0 neg=0:1 pos=0:1'::crm_kpi.sketch)) v(s);

-- Sketches whose sum, extremes or level disagree with their buckets were accepted.
-- A sum beyond count x [min, max] (this one, found first, also has its maximum outside its bucket):
SELECT 'sketch v1 values=double alpha=1e-09 level=0 count=3 zeros=0 min=-2 max=9.99e-10 sum=0x1000001ad7f29bp-52 neg=346573591:1 pos=202732555:1,202732588:1'::crm_kpi.sketch;
SELECT 'sketch v1 values=double alpha=0.01 level=0 count=2 zeros=0 min=1 max=1 sum=0x3p+0 neg=none pos=0:2'::crm_kpi.sketch;
-- and the same sketches with their true sums:
SELECT crm_kpi.sum(s) FROM (VALUES
    ('sketch v1 values=double alpha=0.01 level=0 count=2 zeros=0 min=1 max=1 sum=0x1p+1 neg=none pos=0:2'::crm_kpi.sketch),
    ((SELECT crm_kpi.sketch_agg(x) FROM (VALUES (1e300::float8), (1.7976931348623157e308), (-5e-324)) v(x)))) t(s);
-- A minimum or maximum outside its outermost bucket (5 is in bucket 81, not 1):
SELECT 'sketch v1 values=double alpha=0.01 level=0 count=1 zeros=0 min=5 max=5 sum=0x5p+0 neg=none pos=1:1'::crm_kpi.sketch;
SELECT 'sketch v1 values=double alpha=0.01 level=0 count=1 zeros=0 min=5 max=5 sum=0x5p+0 neg=none pos=81:1'::crm_kpi.sketch IS NOT NULL AS ok;
-- A collapse level higher than the values need (its relative error rounded to 1):
SELECT 'sketch v1 values=double alpha=0.01 level=30 count=3 zeros=3 min=0 max=0 sum=0x0p+0 neg=none pos=none'::crm_kpi.sketch;
-- while sketches that did collapse still read back:
SELECT crm_kpi.relative_error(s) > 0.001 AS collapsed, s::text::crm_kpi.sketch::text = s::text AS text_round_trip,
       crm_kpi.sketch_send(pg_temp.recv_as('crm_kpi.sketch', crm_kpi.sketch_send(s))::crm_kpi.sketch) = crm_kpi.sketch_send(s) AS binary_round_trip
FROM (SELECT crm_kpi.sketch_agg(10 ^ x, 0.001) FROM generate_series(-300, 300, 7) x) t(s);
SELECT round(crm_kpi.relative_error(s)::numeric, 6) AS worst_relative_error, s::text::crm_kpi.sketch::text = s::text AS text_round_trip
FROM (SELECT crm_kpi.sketch_agg(x, 1e-9) FROM (VALUES (5e-324::float8), (-5e-324), (1.7976931348623157e308), (-1.7976931348623157e308)) v(x)) t(s);

DISCARD TEMP;
DROP EXTENSION crm_kpi;
