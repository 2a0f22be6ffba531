-- report.sql: the markdown tables of a run, from bench.timing (medians of the
-- timed rounds; the warm-up round is left out) and the final targets.
\pset format unaligned
\pset tuples_only on
\pset footer off

\ir report_helpers.sql

-- The untimed checks: every value of comparison 2 against the exact one, and
-- comparison 3's rows day by day.
CREATE TABLE bench.pct_error AS
SELECT c.grp, c.ord, t.workers,
       max(abs(t.result::double precision - e.exact) / e.exact) AS max_rel_error
FROM bench.timing t
JOIN bench.contender c USING (comparison, ord)
JOIN (SELECT c2.grp, t2.result::double precision AS exact
      FROM bench.timing t2 JOIN bench.contender c2 USING (comparison, ord)
      WHERE c2.comparison = 2 AND c2.baseline AND t2.workers = 0 AND t2.rep = 1) e USING (grp)
WHERE c.comparison = 2 AND t.rep >= 1
GROUP BY c.grp, c.ord, t.workers;

CREATE TABLE bench.rows_check AS
SELECT r.* FROM bench.compare_rows(
	(SELECT rows_sql FROM bench.contender WHERE comparison = 3 AND ord = 1),
	(SELECT rows_sql FROM bench.contender WHERE comparison = 3 AND ord = 2)) AS r;

-- 1. NPS
SELECT format('### 1. NPS over %s survey responses (%s)', bench.n('survey_rows'), bench.meta('survey_size'));
\echo
\echo '| query | workers | median ms | min–max ms | × count(*) | result |'
\echo '|---|---|---:|---:|---:|---:|'
SELECT format('| `%s` | %s | %s | %s–%s | %s | %s |', name, bench.mode(workers), bench.ms(median_ms),
              bench.ms(min_ms), bench.ms(max_ms), bench.x(ratio),
              CASE WHEN ord IN (1, 4) THEN result ELSE round(result::numeric, 6)::text END)
FROM bench.summary WHERE comparison = 1 ORDER BY workers, ord;
\echo
SELECT format('NPS: %s = `%s`, %s = `%s` (%s).',
              a.name, a.result, b.name, b.result,
              CASE WHEN abs(a.result::numeric - b.result::numeric) <= 1e-9 THEN 'equal' ELSE 'DIFFERENT' END)
FROM bench.summary a JOIN bench.summary b ON b.comparison = 1 AND b.ord = 3 AND b.workers = 0
WHERE a.comparison = 1 AND a.ord = 2 AND a.workers = 0;
\echo

-- 2. Percentiles
SELECT format('### 2. Percentiles over %s log-normal response times (%s)', bench.n('latency_rows'), bench.meta('latency_size'));
\echo
\echo '| q | query | workers | median ms | min–max ms | × percentile_cont | value (1st run) | max rel. error (all runs) |'
\echo '|---|---|---|---:|---:|---:|---:|---:|'
SELECT format('| %s | `%s` | %s | %s | %s–%s | %s | %s | %s |', substr(s.grp, 5), s.name, bench.mode(s.workers),
              bench.ms(s.median_ms), bench.ms(s.min_ms), bench.ms(s.max_ms), bench.x(s.ratio),
              round(s.result::numeric, 3), to_char(100 * e.max_rel_error, 'FM990.0000') || ' %')
FROM bench.summary s JOIN bench.pct_error e USING (grp, ord, workers)
WHERE s.comparison = 2 ORDER BY s.workers, s.ord;
\echo

-- 3. Rolling NPS
SELECT format('### 3. Rolling 30-day NPS over %s responses on %s days', bench.n('daily_rows'), bench.n('daily_days'));
\echo
\echo '| query | workers | median ms | min–max ms | × SQL | mean of the rolling NPS |'
\echo '|---|---|---:|---:|---:|---:|'
SELECT format('| `%s` | %s | %s | %s–%s | %s | %s |', name, bench.mode(workers), bench.ms(median_ms),
              bench.ms(min_ms), bench.ms(max_ms), bench.x(ratio), result)
FROM bench.summary WHERE comparison = 3 ORDER BY workers, ord;
\echo
SELECT format('Window `w`: `ORDER BY day RANGE BETWEEN INTERVAL ''29 days'' PRECEDING AND CURRENT ROW`. '
              'Day by day, the two give %s on %s of %s days.',
              CASE WHEN differing = 0 THEN 'the same NPS' ELSE 'a DIFFERENT NPS' END,
              CASE WHEN differing = 0 THEN days ELSE differing END, days)
FROM bench.rows_check;
\echo

-- Targets
\echo '### Targets'
\echo
\echo '| target | workers | measured | holds |'
\echo '|---|---|---:|---|'
WITH s AS (SELECT * FROM bench.summary),
t AS (
	-- 1: nps within 15 % of count(*), and 1.5 times as fast as the FILTER query
	SELECT 1 AS k, 1 AS c, n.workers, 'nps time ≤ 1.15 × count(*) time' AS target,
	       bench.x(n.ratio) AS measured, n.ratio <= 1.15 AS holds
	FROM s n WHERE n.comparison = 1 AND n.ord = 2
	UNION ALL
	SELECT 2, 1, n.workers, 'nps ≥ 1.5 × as fast as the FILTER query',
	       bench.x(f.median_ms / n.median_ms), f.median_ms / n.median_ms >= 1.5
	FROM s n JOIN s f ON f.comparison = 1 AND f.ord = 3 AND f.workers = n.workers
	WHERE n.comparison = 1 AND n.ord = 2
	UNION ALL
	SELECT 3, 1, NULL, 'nps = the FILTER query''s NPS, every run',
	       (SELECT string_agg(DISTINCT round(result::numeric, 6)::text, ', ')
	        FROM bench.timing WHERE comparison = 1 AND ord IN (2, 3)),
	       (SELECT max(result::numeric) - min(result::numeric) <= 1e-9
	        FROM bench.timing WHERE comparison = 1 AND ord IN (2, 3))
	UNION ALL
	-- 2: approx_percentile against the exact and the t-digest times, worst q
	SELECT 4, 2, a.workers, 'approx_percentile ≥ 3 × as fast as percentile_cont (worst q)',
	       bench.x(min(b.median_ms / a.median_ms)), min(b.median_ms / a.median_ms) >= 3
	FROM s a JOIN s b ON b.comparison = 2 AND b.grp = a.grp AND b.workers = a.workers AND b.baseline
	WHERE a.comparison = 2 AND a.ord % 10 = 2 GROUP BY a.workers
	UNION ALL
	SELECT 5, 2, a.workers, 'approx_percentile ≥ 1.5 × as fast as tdigest (worst q)',
	       bench.x(min(d.median_ms / a.median_ms)), min(d.median_ms / a.median_ms) >= 1.5
	FROM s a JOIN s d ON d.comparison = 2 AND d.grp = a.grp AND d.workers = a.workers AND d.ord % 10 = 3
	WHERE a.comparison = 2 AND a.ord % 10 = 2 GROUP BY a.workers
	UNION ALL
	SELECT 6, 2, NULL, format('approx_percentile error ≤ %s %% (%s), every q and run',
	                       round(100 * coalesce(bench.meta('sketch_bound')::numeric, 0.01), 4),
	                       CASE WHEN bench.meta('sketch_bound') IS NULL THEN 'the 1 % the sketch promises'
	                            ELSE 'crm_kpi.relative_error of the sketch' END),
	       to_char(100 * max(max_rel_error), 'FM990.0000') || ' %',
	       max(max_rel_error) <= coalesce(bench.meta('sketch_bound')::double precision, 0.01)
	FROM bench.pct_error WHERE ord % 10 = 2
	UNION ALL
	-- 3: the rolling NPS equals the SQL one on every day
	SELECT 7, 3, NULL, 'rolling nps = the SQL rolling NPS, every day',
	       format('%s of %s days differ', differing, days), differing = 0
	FROM bench.rows_check
)
SELECT format('| %s | %s | %s | %s |', target, bench.mode(workers), measured,
              CASE WHEN bench.stand_in(c) THEN 'n/a (stand-in)' WHEN holds THEN 'yes' ELSE '**no**' END)
FROM t ORDER BY k, workers;

-- The exact SQL of every query timed
\echo
\echo '### Queries'
\echo
\echo 'Data (`bench/data.sql`, fixed seeds): scores 0–10 drawn with P(0..10) = 2 1 1 2 2 5 6 10 18 22 31 %'
\echo '(NPS about +34); response times exp(ln 180 + 0.9·N(0,1)) ms by Box–Muller; daily responses from 2023-01-01,'
\echo 'fewer on weekends, with a seasonal drift of the scores. Each query returns one value; comparison 2 is shown'
\echo 'at q = 0.5 (0.9 and 0.99 alike).'
\echo
\echo '| # | query | SQL |'
\echo '|---|---|---|'
SELECT format('| %s | `%s` | `%s` |', comparison, name, sql)
FROM bench.contender WHERE grp IN ('', 'q = 0.5') ORDER BY comparison, ord;
