-- periods: KPI periods in crm_kpi.timezone: day boundaries in the zone, DST days of 23 and
-- 25 hours, ISO weeks from Monday, half-open [start, end), validated settings and grains.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
SET TimeZone = 'UTC';  -- how results print; the periods follow crm_kpi.timezone only
SHOW crm_kpi.timezone;

-- UTC (default). 2024-01-07 is a Sunday: its ISO week starts Monday 2024-01-01.
SELECT crm_kpi.period_start('2024-01-07 12:00+00', 'week') AS sunday_week,
       crm_kpi.period_start('2024-01-08 00:00+00', 'week') AS monday_week,
       crm_kpi.period_start('2024-05-17 23:59:59.999999+00') AS day,
       crm_kpi.period_start('2024-05-17 12:00+00', 'month') AS month,
       crm_kpi.period_start('2024-05-17 12:00+00', 'quarter') AS quarter,
       crm_kpi.period_start('2024-05-17 12:00+00', 'year') AS year;

-- New York: the day of an instant is its local day; 2024-03-10 has 23 hours, 2024-11-03 has 25.
SET crm_kpi.timezone = 'America/New_York';
SELECT crm_kpi.period_start('2024-03-10 04:59:59.999999+00') AS before_local_midnight,
       crm_kpi.period_start('2024-03-10 05:00:00+00') AS at_local_midnight;
SELECT d, crm_kpi.period_bounds(d) AS bounds,
       upper(crm_kpi.period_bounds(d)) - lower(crm_kpi.period_bounds(d)) AS length
FROM (VALUES ('2024-03-09'::date), ('2024-03-10'), ('2024-11-03')) v(d);
-- Half-open: the end of a day is the start of the next one.
SELECT crm_kpi.period_start(upper(crm_kpi.period_bounds('2024-03-10'))) AS next_day,
       upper(crm_kpi.period_bounds('2024-03-10')) <@ crm_kpi.period_bounds('2024-03-10') AS end_inside;
SELECT crm_kpi.period_bounds('2024-03-01', 'month') AS march,
       crm_kpi.period_bounds('2024-01-01', 'quarter') AS q1,
       crm_kpi.period_bounds('2024-03-04', 'week') AS week;

-- Tokyo: 2024-03-31 15:00 UTC is already April 1st, in the second quarter.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.period_start('2024-03-31 15:00+00', 'month') AS month,
       crm_kpi.period_start('2024-03-31 15:00+00', 'quarter') AS quarter,
       crm_kpi.period_start('2024-03-31 14:59:59+00', 'quarter') AS quarter_before;
RESET crm_kpi.timezone;

-- Bad settings and arguments.
SELECT pg_temp.sqlstate_of($$SET crm_kpi.timezone = 'Mars/Olympus_Mons'$$);
SELECT pg_temp.sqlstate_of($$SET crm_kpi.timezone = ''$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.period_start(now(), 'fortnight')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.period_bounds('2024-03-05', 'month')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.period_bounds('2024-03-05', 'week')$$);
SELECT crm_kpi.period_start(NULL) IS NULL AS null_in_null_out;
DROP EXTENSION crm_kpi;
