-- soak.sql: the soak's bookkeeping (bench/soak.sh), in schema bench beside the panel queries
-- (bench/panels.sql). Every few seconds bench.soak_take() records the refresh worker's memory (read
-- by the script from /proc) with the queue, the lag, the history and any refresh error; the report
-- (bench/soak_report.sql) reads these tables.

-- One row per sampling tick.
CREATE TABLE bench.soak_sample (
	tick int PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	phase text NOT NULL CHECK (phase IN ('load', 'drain', 'end')),
	worker_pid int,             -- NULL: no refresh worker in pg_stat_activity
	rss_anon_kb bigint,         -- the worker's private memory (RssAnon of /proc/<pid>/status)
	rss_kb bigint,              -- its resident memory, shared buffers it touched included (VmRSS)
	queued bigint NOT NULL,     -- keys in crm_kpi.change_queue
	queue_kb bigint NOT NULL,   -- its size on disk, indexes included
	queue_age interval NOT NULL,      -- age of the oldest queued key (0 when the queue is empty)
	watermark_age interval,           -- now() - the oldest watermark of the KPI tables
	history_rows bigint NOT NULL,     -- rows of crm_kpi.refresh_history
	history_kb bigint NOT NULL,       -- its size on disk, indexes and TOAST included
	last_run_id bigint,               -- runs recorded so far
	writes bigint NOT NULL            -- rows inserted and updated in the sources so far
);

-- Every refresh run recorded with an error, and every KPI table or worker error seen.
CREATE TABLE bench.soak_error (source text NOT NULL, id text NOT NULL, error text NOT NULL, PRIMARY KEY (source, id));

-- Record tick number tick: the worker's memory as read by the caller, and the engine's state now.
CREATE FUNCTION bench.soak_take(tick int, phase text, pid int, rss_anon_kb bigint, rss_kb bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_stat_clear_snapshot();
	INSERT INTO bench.soak_sample (tick, phase, worker_pid, rss_anon_kb, rss_kb, queued, queue_kb, queue_age,
	                               watermark_age, history_rows, history_kb, last_run_id, writes)
	SELECT tick, phase, pid, rss_anon_kb, rss_kb,
	       (SELECT count(*) FROM crm_kpi.change_queue),
	       pg_total_relation_size('crm_kpi.change_queue') / 1024,
	       coalesce(now() - (SELECT min(queued_at) FROM crm_kpi.change_queue), '0'),
	       now() - (SELECT min(watermark) FROM crm_kpi.kpi_table_state),
	       (SELECT count(*) FROM crm_kpi.refresh_history),
	       pg_total_relation_size('crm_kpi.refresh_history') / 1024,
	       (SELECT max(run_id) FROM crm_kpi.refresh_history),
	       (SELECT sum(n_tup_ins + n_tup_upd) FROM pg_stat_user_tables WHERE schemaname = 'crm');
	INSERT INTO bench.soak_error
	SELECT 'refresh_history', run_id::text, error FROM crm_kpi.refresh_history WHERE error IS NOT NULL
	UNION ALL
	SELECT 'kpi_table_state', table_name || ' ' || last_error_at, last_error FROM crm_kpi.kpi_table_state
	WHERE last_error IS NOT NULL
	UNION ALL
	SELECT 'worker_status', w.pid || ' ' || w.last_error_at, w.last_error FROM crm_kpi.worker_status() w
	WHERE w.last_error IS NOT NULL
	ON CONFLICT DO NOTHING;
END $$;

-- The refresh worker's memory contexts, as pg_log_backend_memory_contexts() wrote them into the server
-- log: per dump and context name, how many and their total bytes (level 1 is TopMemoryContext's children).
CREATE TABLE bench.soak_context (
	dump text NOT NULL,         -- 'warm' (after the warm-up) or 'end'
	level int NOT NULL,
	name text NOT NULL,
	contexts int NOT NULL,
	total_bytes bigint NOT NULL,
	PRIMARY KEY (dump, level, name)
);

-- One row per pgbench run: the writers of each kind and the dashboard readers.
CREATE TABLE bench.soak_pgbench (
	kind text PRIMARY KEY,
	clients int NOT NULL,
	rate int NOT NULL,              -- transactions per second asked for (pgbench -R), all clients
	transactions bigint,            -- processed
	failed bigint,                  -- failed transactions
	aborted int,                    -- clients aborted by an error
	tps numeric,
	latency_ms numeric,             -- average
	exit_status int NOT NULL
);

-- A setting from bench.meta.
CREATE FUNCTION bench.soak_meta(k text) RETURNS text LANGUAGE sql STABLE
RETURN (SELECT value FROM bench.meta WHERE key = k);

-- The ticks of the load, with where they fall in it (0 at its start, 1 at its end).
CREATE VIEW bench.soak_load AS
SELECT s.*, extract(epoch FROM s.at - l.first_at) / nullif(extract(epoch FROM l.last_at - l.first_at), 0) AS pos
FROM bench.soak_sample s,
     (SELECT min(at) AS first_at, max(at) AS last_at FROM bench.soak_sample WHERE phase = 'load') l
WHERE s.phase = 'load';

-- The checks: what was measured, the criterion, whether it holds.
CREATE VIEW bench.soak_verdict AS
WITH mem AS (
	-- Private memory after the warm-up (the first tenth of the load) up to 40 % of it, and in its last 30 %.
	SELECT max(rss_anon_kb) FILTER (WHERE pos >= 0.1 AND pos <= 0.4) AS early_kb,
	       max(rss_anon_kb) FILTER (WHERE pos >= 0.7) AS late_kb,
	       count(rss_anon_kb) AS measured, count(*) AS ticks
	FROM bench.soak_load
), fin AS (
	SELECT * FROM bench.soak_sample WHERE phase = 'end'
)
SELECT 1 AS ord, 'pgbench writers and readers: failed transactions, aborted clients, exit status' AS "check",
       format('%s failed, %s aborted, exit status %s',
              sum(coalesce(failed, 0)), sum(coalesce(aborted, 0)), string_agg(DISTINCT exit_status::text, ', ')) AS measured,
       'all 0' AS criterion,
       coalesce(bool_and(failed = 0 AND aborted = 0 AND exit_status = 0), false) AS holds
FROM bench.soak_pgbench
UNION ALL
SELECT 2, 'refresh errors (crm_kpi.refresh_history, kpi_table_state, worker_status(), every tick)',
       (SELECT count(*) FROM bench.soak_error)::text, '0', NOT EXISTS (SELECT FROM bench.soak_error)
UNION ALL
SELECT 3, 'ERROR, FATAL or PANIC lines in the server log (but autovacuum giving way to a lock: '
          || bench.soak_meta('autovacuum_cancels') || ')',
       bench.soak_meta('server_log_errors'), '0', bench.soak_meta('server_log_errors') = '0'
UNION ALL
SELECT 4, 'refresh worker processes seen (a restart is another pid)',
       (SELECT count(DISTINCT worker_pid) || CASE WHEN bool_and(worker_pid IS NOT NULL) THEN '' ELSE ', missing at some ticks' END
        FROM bench.soak_sample),
       '1, at every tick',
       (SELECT count(DISTINCT worker_pid) = 1 AND bool_and(worker_pid IS NOT NULL) FROM bench.soak_sample)
UNION ALL
SELECT 5, 'worker private memory (RssAnon): peak of the last 30 % of the load vs peak of 10–40 %',
       format('%s vs %s kB', late_kb, early_kb)
       || CASE WHEN measured < ticks THEN format(' (measured at %s of %s ticks)', measured, ticks) ELSE '' END,
       'late ≤ early × 1.10 + 1,024 kB, measured at every tick',
       measured = ticks AND late_kb <= early_kb * 1.10 + 1024
FROM mem
UNION ALL
SELECT 6, 'oldest queued key, every tick of the load',
       (SELECT coalesce(to_char(extract(epoch FROM max(queue_age)), 'FM999,990.0'), '') || ' s max' FROM bench.soak_load),
       '< 60 s', (SELECT max(queue_age) < interval '60 seconds' FROM bench.soak_load)
UNION ALL
SELECT 7, 'queue once the writers stopped (crm_kpi.wait_for_refresh)',
       format('%s keys, caught up: %s, in %s s', fin.queued, bench.soak_meta('caught_up'), bench.soak_meta('drain_seconds')),
       '0 keys, caught up', fin.queued = 0 AND bench.soak_meta('caught_up') = 't'
FROM fin
UNION ALL
SELECT 8, 'crm_kpi.refresh_history rows, every tick',
       (SELECT max(history_rows) FROM bench.soak_sample)::text || ' max',
       '≤ crm_kpi.history_limit (' || bench.soak_meta('history_limit') || ')',
       (SELECT max(history_rows) FROM bench.soak_sample) <= bench.soak_meta('history_limit')::bigint
UNION ALL
SELECT 9, 'crm_kpi.verify() rows, before and after the soak',
       bench.soak_meta('verify_before') || ', ' || bench.soak_meta('verify_after'), '0, 0',
       bench.soak_meta('verify_before') = '0' AND bench.soak_meta('verify_after') = '0';
