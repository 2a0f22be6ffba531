-- data.sql: the benchmark's data, generated in SQL from a fixed seed, so every
-- run measures the same rows. psql variables: survey_rows, latency_rows,
-- days, per_day. Generation runs serial: random() must be called in order.
SET max_parallel_workers_per_gather = 0;

-- Score distribution of a plausible B2B survey (NPS +34): P(0..10) =
-- .02 .01 .01 .02 .02 .05 .06 .10 .18 .22 .31, drawn from one random() as the
-- number of cumulative thresholds it reaches.
CREATE FUNCTION bench.draw_score(u double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN width_bucket(u, ARRAY[.02, .03, .04, .06, .08, .13, .19, .29, .47, .69]::double precision[]);

-- 1. Survey responses: one integer score 0-10 per row.
SELECT setseed(0.11);
CREATE TABLE bench.survey AS
SELECT i AS id, bench.draw_score(random()) AS score
FROM generate_series(1, :survey_rows) AS i;

-- 2. Response times in ms, log-normal (median 180 ms, sigma 0.9), by Box-Muller.
SELECT setseed(0.22);
CREATE TABLE bench.latency AS
SELECT i AS id,
       exp(ln(180) + 0.9 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS x
FROM generate_series(1, :latency_rows) AS i;

-- 3. Daily survey responses over :days days from 2023-01-01: per_day on a
-- weekday, 40 % of it on weekends, +/-25 % noise, and a seasonal drift of the
-- scores so that the rolling NPS moves.
SELECT setseed(0.33);
CREATE TABLE bench.daily_response AS
SELECT d::date AS day,
       bench.draw_score(random() + 0.08 * sin(extract(doy FROM d) / 58.0)) AS score
FROM generate_series(timestamp '2023-01-01', timestamp '2023-01-01' + (:days - 1) * interval '1 day',
                     interval '1 day') AS d,
     LATERAL generate_series(1, greatest(1, round(:per_day
         * CASE WHEN extract(isodow FROM d) >= 6 THEN 0.4 ELSE 1.0 END
         * (0.75 + 0.5 * random()))::int)) AS i;

VACUUM (ANALYZE) bench.survey;
VACUUM (ANALYZE) bench.latency;
VACUUM (ANALYZE) bench.daily_response;

INSERT INTO bench.meta
SELECT 'survey_rows', count(*)::text FROM bench.survey
UNION ALL SELECT 'survey_size', pg_size_pretty(pg_table_size('bench.survey'))
UNION ALL SELECT 'latency_rows', count(*)::text FROM bench.latency
UNION ALL SELECT 'latency_size', pg_size_pretty(pg_table_size('bench.latency'))
UNION ALL SELECT 'daily_rows', count(*)::text FROM bench.daily_response
UNION ALL SELECT 'daily_days', count(DISTINCT day)::text FROM bench.daily_response;
