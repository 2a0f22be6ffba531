-- contenders.sql: the three comparisons and the queries each one times.
-- Every query returns one value; stand-ins (--stand-ins) are plain SQL that
-- only exercise the driver before crm_kpi's own functions exist.

INSERT INTO bench.comparison VALUES
	(1, 'NPS over the survey responses (baseline: count(*))'),
	(2, 'Percentiles of log-normal response times (baseline: percentile_cont, exact)'),
	(3, 'Rolling 30-day NPS by window function (baseline: plain SQL window counts)');

-- 1. NPS: the aggregate against the floor (count(*)) and the SQL formulation.
INSERT INTO bench.contender (comparison, ord, name, baseline, sql, needs, standin_name, standin_sql) VALUES
	(1, 1, 'count(*)', true,
	 'SELECT count(*)::text FROM bench.survey', '{}', NULL, NULL),
	(1, 2, 'crm_kpi.nps(score)', false,
	 'SELECT crm_kpi.nps(score)::text FROM bench.survey', '{crm_kpi.nps(integer)}',
	 'stand-in: 100.0 * sum(CASE ...) / count(*)',
	 'SELECT (100.0 * sum(CASE WHEN score >= 9 THEN 1 WHEN score <= 6 THEN -1 ELSE 0 END) / count(*))::text FROM bench.survey'),
	(1, 3, 'SQL: count(*) FILTER (...)', false,
	 'SELECT (100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)) / count(*))::text FROM bench.survey',
	 '{}', NULL, NULL),
	-- for reference: the cheapest aggregate that reads the score column too
	(1, 4, 'count(score)', false,
	 'SELECT count(score)::text FROM bench.survey', '{}', NULL, NULL);

-- 2. Percentiles at three q: the sketch, the exact ordered-set aggregate, t-digest.
INSERT INTO bench.contender (comparison, grp, ord, name, baseline, sql, needs, standin_name, standin_sql)
SELECT 2, format('q = %s', q), 10 * i + k, name, k = 1, format(sql, q), needs, standin_name, format(standin_sql, q)
FROM unnest(ARRAY['0.5', '0.9', '0.99']) WITH ORDINALITY AS qs(q, i),
(VALUES
	(1, 'percentile_cont (exact)',
	 'SELECT (percentile_cont(%s) WITHIN GROUP (ORDER BY x))::text FROM bench.latency', '{}'::text[], NULL, NULL),
	(2, 'crm_kpi.approx_percentile(x, q)',
	 'SELECT crm_kpi.approx_percentile(x, %s)::text FROM bench.latency',
	 '{"crm_kpi.approx_percentile(double precision,double precision)"}',
	 'stand-in: percentile_disc (exact)',
	 'SELECT (percentile_disc(%s) WITHIN GROUP (ORDER BY x))::text FROM bench.latency'),
	(3, 'tdigest_percentile(x, 100, q)',
	 'SELECT tdigest_percentile(x, 100, %s)::text FROM bench.latency', '{}', NULL, NULL)
) AS c(k, name, sql, needs, standin_name, standin_sql);

-- 3. The NPS of the 30 days ending on each response's day, for every response.
-- The timed query reads every value (their mean); the rows themselves are
-- compared day by day apart, untimed.
INSERT INTO bench.contender (comparison, ord, name, baseline, sql, rows_sql, needs, standin_name, standin_sql, standin_rows_sql)
SELECT 3, ord, name, baseline,
       format('SELECT round(avg(v), 6)::text FROM (%s) s', rows_sql), rows_sql, needs,
       standin_name, 'SELECT round(avg(v), 6)::text FROM (' || standin_rows_sql || ') s', standin_rows_sql
FROM (VALUES
	(1, 'SQL: count(*) FILTER (...) OVER w', true,
	 'SELECT day, 100.0 * (count(*) FILTER (WHERE score >= 9) OVER w - count(*) FILTER (WHERE score <= 6) OVER w) / count(*) OVER w AS v'
	 ' FROM bench.daily_response WINDOW w AS (ORDER BY day RANGE BETWEEN INTERVAL ''29 days'' PRECEDING AND CURRENT ROW)',
	 '{}'::text[], NULL, NULL),
	(2, 'crm_kpi.nps(score) OVER w', false,
	 'SELECT day, crm_kpi.nps(score) OVER w AS v'
	 ' FROM bench.daily_response WINDOW w AS (ORDER BY day RANGE BETWEEN INTERVAL ''29 days'' PRECEDING AND CURRENT ROW)',
	 '{crm_kpi.nps(integer)}',
	 'stand-in: 100.0 * sum(CASE ...) OVER w / count(*) OVER w',
	 'SELECT day, 100.0 * sum(CASE WHEN score >= 9 THEN 1 WHEN score <= 6 THEN -1 ELSE 0 END) OVER w / count(*) OVER w AS v'
	 ' FROM bench.daily_response WINDOW w AS (ORDER BY day RANGE BETWEEN INTERVAL ''29 days'' PRECEDING AND CURRENT ROW)')
) AS c(ord, name, baseline, rows_sql, needs, standin_name, standin_rows_sql);

-- With --stand-ins: replace the queries that need a function this build of
-- crm_kpi does not have yet.
\if :stand_ins
UPDATE bench.contender
SET name = standin_name, sql = standin_sql, rows_sql = coalesce(standin_rows_sql, rows_sql), needs = '{}'
WHERE standin_sql IS NOT NULL
  AND needs && ARRAY(SELECT bench.missing_functions());
\endif
