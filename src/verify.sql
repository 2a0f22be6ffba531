-- verify.sql: crm_kpi.verify() (maintained vs from scratch) and the status view.

CREATE FUNCTION crm_kpi.verify()
    RETURNS TABLE (table_name name, key jsonb, column_name text, maintained text, fresh text)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC' SET crm_kpi.timezone = 'UTC' SET crm_kpi.active_window = '90 days'
    SET crm_kpi.churn_after = '180 days' SET crm_kpi.loyal_min_tenure = '365 days'
    SET crm_kpi.loyal_min_orders = 5 SET crm_kpi.resolution_sla = '72 hours' SET jit = off
AS $$
DECLARE
    t record;
    key_sql text;
BEGIN
    PERFORM crm_kpi.library_version();  -- loads the library, so that its settings are defined
    PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
    FOR t IN SELECT * FROM crm_kpi.kpi_tables k ORDER BY k.position LOOP
        key_sql := (SELECT 'jsonb_build_object(' || string_agg(format('%L, x.%I', c, c), ', ') || ')'
                    FROM unnest(t.key_columns) c);
        RETURN QUERY EXECUTE format(
            'WITH m AS MATERIALIZED (SELECT %1$s AS k, to_jsonb(x) AS j FROM crm_kpi.%2$I x), '
            'f AS MATERIALIZED (SELECT %1$s AS k, to_jsonb(x) AS j FROM crm_kpi.%3$I(NULL::%4$s) x), '
            'differ AS MATERIALIZED (SELECT m.k AS mk, m.j AS mj, f.k AS fk, f.j AS fj FROM m FULL JOIN f ON f.k = m.k '
            '                        WHERE m.j IS DISTINCT FROM f.j) '
            'SELECT %2$L::name, coalesce(d.mk, d.fk), c.col, c.mv, c.fv '
            'FROM differ d '
            'CROSS JOIN LATERAL (SELECT e.key, d.mj -> e.key #>> ''{}'', d.fj -> e.key #>> ''{}'' FROM jsonb_each(d.mj) e '
            '                    WHERE d.fj IS NOT NULL AND (d.mj -> e.key) IS DISTINCT FROM (d.fj -> e.key) '
            '                    UNION ALL SELECT ''*'', d.mj::text, d.fj::text WHERE d.mj IS NULL OR d.fj IS NULL) AS c (col, mv, fv) '
            'ORDER BY 2, 3',
            key_sql, t.table_name, 'fresh_' || t.table_name,
            CASE t.key_grain WHEN 'customer' THEN 'bigint[]' ELSE 'date[]' END);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.verify() IS
    'Recomputes every KPI table from scratch (settings and as_of of engine_state) and returns each difference from the maintained table: the row''s key, the column (* for a row only one side has, with the whole row), both values. No rows means exact';

CREATE VIEW crm_kpi.status AS
WITH pending AS MATERIALIZED (  -- one pass over the queue for all the tables
    SELECT q.target, count(*) AS keys, min(q.queued_at) AS oldest, crm_kpi.stale_tables(q.target) AS stales
    FROM crm_kpi.change_queue q GROUP BY q.target)
SELECT k.table_name, s.watermark,
       (SELECT coalesce(sum(p.keys), 0)::bigint FROM pending p WHERE k.table_name = ANY(p.stales)) AS pending_keys,
       (SELECT min(p.oldest) FROM pending p WHERE k.table_name = ANY(p.stales)) AS oldest_pending,
       now() - (SELECT min(p.oldest) FROM pending p WHERE k.table_name = ANY(p.stales)) AS lag,
       s.last_refresh_at, s.last_duration, s.rows_touched, s.last_error, s.last_error_at,
       e.as_of, e.built_at,
       -- of this table: the rebuild markers that concern it (a kind's only where that kind feeds it)
       crm_kpi.rebuild_reason_for(ARRAY(SELECT p.target FROM pending p WHERE left(p.target, 1) = '*' AND k.table_name = ANY(p.stales)))
           AS needs_rebuild,
       w.pid AS worker_pid, w.state AS worker_state, w.last_run_at AS worker_last_run_at,
       w.last_error AS worker_last_error, s.failures, s.retry_at
FROM crm_kpi.kpi_tables k
JOIN crm_kpi.kpi_table_state s ON s.table_name = k.table_name
CROSS JOIN crm_kpi.engine_state e
CROSS JOIN crm_kpi.worker_status() w;
COMMENT ON VIEW crm_kpi.status IS
    'One row per KPI table: watermark (changes committed before it are reflected), stale keys pending, the oldest one''s queue time and age (lag), last refresh that touched it, its duration and rows written, last error, the instant time-dependent KPIs are taken at, why it needs a rebuild (NULL when it does not; a rebuild of a kind''s tables shows on those only), this database''s refresh worker (pid, state, last run, last error), and the refreshes that failed on the table in a row (failures) with the time until which the worker leaves it alone (retry_at; NULL when it is not failing)';
