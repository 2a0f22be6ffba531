-- panels.sql: the panel benchmark's tables and timing (bench/panels.sh), in a database of its own.
-- Each panel query of the Grafana dashboards, as Grafana sends it, is timed against its raw
-- equivalent (bench/panels_raw.sql) on the server: clock_timestamp() around EXECUTE in PL/pgSQL,
-- planning included, every row of the result produced and turned into text (as a client gets it).
CREATE SCHEMA bench;

-- Facts about the run (sizes, range), for the report.
CREATE TABLE bench.meta (key text PRIMARY KEY, value text NOT NULL);

-- One row per panel target: its query and the raw equivalent, both expanded (bench/panels_expand.pl).
CREATE TABLE bench.panel (
	ord int PRIMARY KEY,
	dashboard text NOT NULL,
	uid text NOT NULL,
	panel_id int NOT NULL,
	ref_id text NOT NULL,
	title text NOT NULL,
	panel_type text NOT NULL,
	sql text NOT NULL,
	raw_sql text,          -- NULL: no source holds what the panel shows (raw_note says why)
	raw_note text,
	UNIQUE (uid, panel_id, ref_id)
);

-- One row per timed execution; rep 0 is the warm-up and is not reported.
CREATE TABLE bench.panel_timing (
	ord int NOT NULL REFERENCES bench.panel,
	contender text NOT NULL CHECK (contender IN ('kpi', 'raw')),
	rep int NOT NULL,
	ms double precision NOT NULL,
	row_count bigint NOT NULL
);

-- Whether the panel and its raw equivalent return the same rows (compared once, untimed).
CREATE TABLE bench.panel_check (
	ord int PRIMARY KEY REFERENCES bench.panel,
	kpi_rows bigint NOT NULL,
	raw_rows bigint NOT NULL,
	differing_rows bigint NOT NULL
);

-- Run one query to its last row and return how long it took, in milliseconds, and its rows.
CREATE FUNCTION bench.panel_time(q text, OUT ms double precision, OUT row_count bigint)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	digest text;
BEGIN
	t0 := clock_timestamp();
	EXECUTE format('SELECT count(*), md5(string_agg(r::text, E''\n'')) FROM (%s) r', q) INTO row_count, digest;
	ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;

-- Two JSON rows are the same: the same columns, each value equal, numbers within a relative 1e-9
-- (a mean or a ratio may be computed in another order or type).
CREATE FUNCTION bench.same_row(a jsonb, b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN a IS NOT NULL AND b IS NOT NULL AND NOT EXISTS (
	SELECT FROM jsonb_each(a) x FULL JOIN jsonb_each(b) y USING (key)
	WHERE NOT coalesce(x.value = y.value
	                   OR (jsonb_typeof(x.value) = 'number' AND jsonb_typeof(y.value) = 'number'
	                       AND abs(x.value::text::numeric - y.value::text::numeric)
	                           <= 1e-9 * greatest(1, abs(x.value::text::numeric))), false));

-- Compare a panel's rows with its raw equivalent's, position by position (both are ordered).
CREATE FUNCTION bench.panel_compare(p_ord int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	p bench.panel;
	a jsonb;
	b jsonb;
BEGIN
	SELECT * INTO p FROM bench.panel WHERE ord = p_ord;
	EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(r)), ''[]'') FROM (%s) r', p.sql) INTO a;
	EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(r)), ''[]'') FROM (%s) r', p.raw_sql) INTO b;
	INSERT INTO bench.panel_check
	SELECT p_ord, jsonb_array_length(a), jsonb_array_length(b), count(*)
	FROM jsonb_array_elements(a) WITH ORDINALITY x (r, i)
	FULL JOIN jsonb_array_elements(b) WITH ORDINALITY y (r, i) USING (i)
	WHERE NOT bench.same_row(x.r, y.r);
END $$;

-- Time every panel: for each, a warm-up of both queries, then up to kpi_reps rounds of the panel
-- and raw_reps of its raw equivalent, interleaved (so that drift weighs on both alike), while the
-- timed rounds of a query have taken less than budget (but at least 3 of the panel, 1 of the raw
-- query); then compare the two results. One transaction per panel, with a NOTICE as it goes.
CREATE PROCEDURE bench.panel_run(kpi_reps int, raw_reps int, budget interval)
LANGUAGE plpgsql AS $$
DECLARE
	p record;
	r int;
	t record;
	spent double precision[];
	started timestamptz;
BEGIN
	FOR p IN SELECT ord, uid, panel_id, title, sql, raw_sql FROM bench.panel ORDER BY ord LOOP
		started := clock_timestamp();
		spent := '{0,0}';
		FOR r IN 0 .. greatest(kpi_reps, raw_reps) LOOP
			IF r <= kpi_reps AND (r <= 3 OR spent[1] < 1000 * extract(epoch FROM budget)) THEN
				t := bench.panel_time(p.sql);
				INSERT INTO bench.panel_timing VALUES (p.ord, 'kpi', r, t.ms, t.row_count);
				spent[1] := spent[1] + CASE WHEN r > 0 THEN t.ms ELSE 0 END;
			END IF;
			IF r <= raw_reps AND p.raw_sql IS NOT NULL AND (r <= 1 OR spent[2] < 1000 * extract(epoch FROM budget)) THEN
				t := bench.panel_time(p.raw_sql);
				INSERT INTO bench.panel_timing VALUES (p.ord, 'raw', r, t.ms, t.row_count);
				spent[2] := spent[2] + CASE WHEN r > 0 THEN t.ms ELSE 0 END;
			END IF;
		END LOOP;
		IF p.raw_sql IS NOT NULL THEN
			PERFORM bench.panel_compare(p.ord);
		END IF;
		COMMIT;
		RAISE NOTICE 'panel %/% % "%": % s', p.ord, (SELECT count(*) FROM bench.panel), p.uid, p.title,
			round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
	END LOOP;
END $$;

-- Medians per panel and contender.
CREATE VIEW bench.panel_summary AS
SELECT p.ord, p.dashboard, p.uid, p.panel_id, p.ref_id, p.title, p.raw_note,
       k.median_ms AS kpi_ms, k.min_ms AS kpi_min_ms, k.max_ms AS kpi_max_ms, k.runs AS kpi_runs, k.row_count,
       r.median_ms AS raw_ms, r.runs AS raw_runs,
       r.median_ms / nullif(k.median_ms, 0) AS speedup,
       c.kpi_rows, c.raw_rows, c.differing_rows
FROM bench.panel p
JOIN (SELECT ord, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median_ms, min(ms) AS min_ms, max(ms) AS max_ms,
             count(*) AS runs, max(row_count) AS row_count
      FROM bench.panel_timing WHERE contender = 'kpi' AND rep >= 1 GROUP BY ord) k USING (ord)
LEFT JOIN (SELECT ord, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median_ms, count(*) AS runs
           FROM bench.panel_timing WHERE contender = 'raw' AND rep >= 1 GROUP BY ord) r USING (ord)
LEFT JOIN bench.panel_check c USING (ord);
