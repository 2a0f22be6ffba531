-- driver.sql: the benchmark's tables, its timing function and its round-robin loop.
-- Every query is timed on the server, inside PL/pgSQL: clock_timestamp() before
-- and after EXECUTE, so neither the client, the network nor EXPLAIN's
-- instrumentation is part of the time (planning, a fraction of a millisecond, is).
CREATE SCHEMA bench;

-- Facts about the run (table sizes, the sketch's error bound), for the report.
CREATE TABLE bench.meta (key text PRIMARY KEY, value text NOT NULL);

-- What each comparison measures; the contender marked baseline is what the
-- others' times are divided by.
CREATE TABLE bench.comparison (
	comparison int PRIMARY KEY,
	title text NOT NULL
);

-- One row per query timed. Each returns a single value (as text); the rows
-- of comparison 3 are checked apart, from rows_sql (columns day, v).
CREATE TABLE bench.contender (
	comparison int NOT NULL REFERENCES bench.comparison,
	grp text NOT NULL DEFAULT '',       -- sub-comparison, e.g. 'q = 0.9'
	ord int NOT NULL,                   -- round-robin order (unique per comparison)
	name text NOT NULL,
	baseline boolean NOT NULL DEFAULT false,
	sql text NOT NULL,
	rows_sql text,
	needs text[] NOT NULL DEFAULT '{}', -- functions it calls (regprocedure text)
	standin_name text,                  -- used instead with --stand-ins
	standin_sql text,
	standin_rows_sql text,
	PRIMARY KEY (comparison, ord)
);

-- One row per timed execution; rep 0 is the warm-up and is not reported.
CREATE TABLE bench.timing (
	comparison int NOT NULL,
	ord int NOT NULL,
	workers int NOT NULL,
	rep int NOT NULL,
	ms double precision NOT NULL,
	result text
);

-- Run one query and return how long it took, in milliseconds, and its value.
CREATE FUNCTION bench.time_query(q text, OUT ms double precision, OUT result text)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	EXECUTE q INTO result; -- not STRICT: a row limit would forbid a parallel plan
	ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;

-- Time every contender of a comparison with the given number of parallel
-- workers per gather: per group, one warm-up each, then p_reps rounds
-- A B C, A B C, ... so that drift hits every contender alike.
CREATE FUNCTION bench.run(p_comparison int, p_workers int, p_reps int)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	g text;
	c record;
	r int;
	t record;
BEGIN
	PERFORM set_config('max_parallel_workers_per_gather', p_workers::text, true);
	FOR g IN SELECT grp FROM bench.contender WHERE comparison = p_comparison
	         GROUP BY grp ORDER BY min(ord) LOOP
		FOR r IN 0..p_reps LOOP
			FOR c IN SELECT * FROM bench.contender
			         WHERE comparison = p_comparison AND grp = g ORDER BY ord LOOP
				t := bench.time_query(c.sql);
				INSERT INTO bench.timing VALUES (p_comparison, c.ord, p_workers, r, t.ms, t.result);
			END LOOP;
		END LOOP;
	END LOOP;
END $$;

-- The functions the contenders need that this database lacks.
CREATE FUNCTION bench.missing_functions() RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	f text;
	found regprocedure;
BEGIN
	FOR f IN SELECT DISTINCT unnest(needs) FROM bench.contender ORDER BY 1 LOOP
		BEGIN
			found := to_regprocedure(f);
		EXCEPTION WHEN undefined_object OR invalid_schema_name THEN
			found := NULL; -- an argument type that does not exist yet
		END;
		IF found IS NULL THEN
			RETURN NEXT f;
		END IF;
	END LOOP;
END $$;

-- Compare two queries' rows (day, v) day by day: how many days, and on how
-- many the values differ (by more than 1e-9) or exist on one side only.
CREATE FUNCTION bench.compare_rows(a text, b text, OUT days bigint, OUT differing bigint)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($q$
		SELECT count(*),
		       count(*) FILTER (WHERE a.v IS NULL OR b.v IS NULL OR abs(a.v - b.v) > 1e-9)
		FROM (SELECT DISTINCT day, v FROM (%s) s) a
		FULL JOIN (SELECT DISTINCT day, v FROM (%s) s) b USING (day)$q$, a, b)
	INTO days, differing;
END $$;

-- Medians per contender and worker count, with the ratio to the baseline.
CREATE VIEW bench.summary AS
WITH m AS (
	SELECT comparison, ord, workers,
	       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median_ms,
	       min(ms) AS min_ms, max(ms) AS max_ms, count(*) AS runs,
	       count(DISTINCT result) AS distinct_results,
	       min(result) FILTER (WHERE rep = 1) AS result
	FROM bench.timing WHERE rep >= 1
	GROUP BY comparison, ord, workers
)
SELECT c.comparison, c.grp, c.ord, c.name, c.baseline, m.workers,
       m.median_ms, m.min_ms, m.max_ms, m.runs, m.distinct_results, m.result,
       m.median_ms / b.median_ms AS ratio
FROM m
JOIN bench.contender c USING (comparison, ord)
JOIN bench.contender cb ON cb.comparison = c.comparison AND cb.grp = c.grp AND cb.baseline
JOIN m b ON b.comparison = cb.comparison AND b.ord = cb.ord AND b.workers = m.workers;
