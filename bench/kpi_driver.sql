-- kpi_driver.sql: the KPI-table section's tables and functions: the writes each
-- scenario makes (untimed), the timing of one refresh in its own backend, and the
-- backend's memory as /proc reports it. bench/kpi.sh drives them.

-- One row per timed operation (rep 0 is the warm-up and is not reported). ms is
-- the server-side time; tps is pgbench's; the memory columns are the backend's:
-- VmHWM (peak resident set) and RssShmem (shared memory it touched, mostly
-- shared buffers) at the end, and anon_peak_kb, its private memory (RssAnon)
-- sampled every 0.1 s while it ran.
CREATE TABLE bench.kpi_timing (
	part int NOT NULL,
	scenario text NOT NULL,
	contender text NOT NULL,
	rep int NOT NULL,
	ms double precision,
	tps double precision,
	hwm_kb bigint,
	shmem_kb bigint,
	anon_peak_kb bigint,
	detail jsonb,
	PRIMARY KEY (part, scenario, contender, rep)
);

-- A field of this backend's /proc status, in kB.
CREATE FUNCTION bench.kpi_proc_kb(field text) RETURNS bigint
LANGUAGE sql VOLATILE
RETURN (SELECT substring(l FROM '(\d+) kB')::bigint
        FROM regexp_split_to_table(pg_read_file('/proc/' || pg_backend_pid() || '/status'), E'\n') l
        WHERE l LIKE field || ':%');

-- Run one statement and record its time and this backend's memory; a SELECT
-- returns the jsonb kept as detail.
CREATE FUNCTION bench.kpi_time(p_part int, p_scenario text, p_contender text, p_rep int, p_sql text)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	ms double precision;
	detail jsonb;
BEGIN
	t0 := clock_timestamp();
	IF p_sql ~* '^\s*select' THEN
		EXECUTE p_sql INTO detail;
	ELSE
		EXECUTE p_sql;
	END IF;
	ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
	INSERT INTO bench.kpi_timing (part, scenario, contender, rep, ms, hwm_kb, shmem_kb, detail)
	VALUES (p_part, p_scenario, p_contender, p_rep, ms, bench.kpi_proc_kb('VmHWM'), bench.kpi_proc_kb('RssShmem'),
	        detail);
	RETURN ms;
END $$;

-- Refresh the materialized views in the order of their KPI tables (all, or those
-- named); returns each one's milliseconds.
CREATE FUNCTION bench.kpi_refresh_mvs(p_concurrently boolean, p_tables name[] DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	m record;
	t0 timestamptz;
	times jsonb := '{}';
BEGIN
	FOR m IN SELECT * FROM bench.kpi_mv WHERE p_tables IS NULL OR table_name = ANY(p_tables) ORDER BY position LOOP
		t0 := clock_timestamp();
		EXECUTE format('REFRESH MATERIALIZED VIEW %s%s', CASE WHEN p_concurrently THEN 'CONCURRENTLY ' END, m.mv);
		times := times || jsonb_build_object(m.table_name, 1000 * extract(epoch FROM clock_timestamp() - t0));
	END LOOP;
	RETURN times;
END $$;

-- crm_kpi.refresh() or rebuild(), with what the run did (from its refresh_history row).
CREATE FUNCTION bench.kpi_engine(p_rebuild boolean, p_concurrently boolean DEFAULT true) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	h crm_kpi.refresh_history;
BEGIN
	IF p_rebuild THEN
		h := crm_kpi.rebuild(concurrently => p_concurrently);
	ELSE
		h := crm_kpi.refresh();
	END IF;
	IF h.error IS NOT NULL THEN
		RAISE EXCEPTION 'crm_kpi % failed: %', h.mode, h.error;
	END IF;
	RETURN jsonb_build_object('batches', h.batches, 'stale_keys', h.stale_keys, 'rows_touched', h.rows_touched,
	                          'tables', h.tables);
END $$;

-- The write of one scenario of part 1, p_n rows, from a seed of its own (untimed).
-- insert: new orders of random customers, placed in the last hour;
-- random: amount and time (3 hours earlier) of random existing orders;
-- recent: the same, of random orders of the last 30 days.
CREATE FUNCTION bench.kpi_change(p_scenario text, p_n int, p_rep int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	customers bigint := (SELECT max(customer_id) FROM crm.customers);
	reps bigint := (SELECT max(rep_id) FROM crm.sales_reps);
	generated bigint := (SELECT value::bigint FROM bench.meta WHERE key = 'kpi_generated_orders');
	n bigint;
BEGIN
	PERFORM setseed(((hashtext(p_scenario) & 65535) * 100 + p_rep) / 6553600.0);
	IF p_scenario = 'insert' THEN
		INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at)
		SELECT 1 + floor(random() * customers)::bigint,
		       CASE WHEN random() < 0.7 THEN 1 + floor(random() * reps)::bigint END,
		       CASE WHEN random() < 0.95 THEN 'completed' ELSE 'refunded' END,
		       round((60 * exp(0.55 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::numeric, 2),
		       now() - random() * interval '1 hour'
		FROM generate_series(1, p_n);
	ELSIF p_scenario = 'random' THEN
		UPDATE crm.orders SET amount = amount + 1, ordered_at = ordered_at - interval '3 hours'
		WHERE order_id IN (SELECT DISTINCT 1 + floor(random() * generated)::bigint
		                   FROM generate_series(1, p_n + p_n / 100) LIMIT p_n);
	ELSIF p_scenario = 'recent' THEN
		UPDATE crm.orders SET amount = amount + 1, ordered_at = ordered_at - interval '3 hours'
		WHERE order_id IN (SELECT order_id FROM crm.orders WHERE ordered_at >= now() - interval '30 days'
		                   ORDER BY random() LIMIT p_n);
	ELSE
		RAISE EXCEPTION 'unknown scenario %', p_scenario;
	END IF;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN (SELECT jsonb_build_object('rows', n, 'stale_days', count(DISTINCT day) FILTER (WHERE target IN ('orders', 'sales')),
	                                  'stale_customers', count(DISTINCT customer_id))
	        FROM crm_kpi.change_queue);
END $$;

-- Rows of a KPI table and of its materialized view that the other lacks (compared as text).
CREATE FUNCTION bench.kpi_mv_diff(p_table name) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	mv regclass := (SELECT mv FROM bench.kpi_mv WHERE table_name = p_table);
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM ((SELECT t::text FROM crm_kpi.%1$I t EXCEPT ALL SELECT m::text FROM %2$s m) '
	               'UNION ALL (SELECT m::text FROM %2$s m EXCEPT ALL SELECT t::text FROM crm_kpi.%1$I t)) d',
	               p_table, mv) INTO n;
	RETURN n;
END $$;
