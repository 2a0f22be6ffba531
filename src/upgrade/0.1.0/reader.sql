-- reader.sql: the read-only role of dashboards and reports.

CREATE FUNCTION crm_kpi.grant_reader(reader regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r text := reader::text;
    obj record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA crm_kpi TO %s', r);
    -- The KPI tables and their views, read only.
    FOR obj IN
        SELECT c.oid::regclass AS rel FROM pg_class c
        WHERE c.relnamespace = 'crm_kpi'::regnamespace AND c.relkind IN ('r', 'v')
          AND (c.relname IN (SELECT k.table_name FROM crm_kpi.kpi_tables k)
               OR c.relkind = 'v'
               OR c.relname IN ('rfm_segments', 'kpi_table_state', 'refresh_history', 'engine_state', 'change_queue',
                                'kpi_tables', 'lifecycle_history'))
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %s', obj.rel, r);
    END LOOP;
    -- Report functions and the accessors of the summary types: they only read.
    FOR obj IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p
        WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.provolatile IN ('i', 's') AND p.prokind IN ('f', 'a')
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', obj.fn, r);
    END LOOP;
    -- The worker's status (for crm_kpi.status): volatile, but it only reads shared memory.
    EXECUTE format('GRANT EXECUTE ON FUNCTION crm_kpi.worker_status() TO %s', r);
END $$;
COMMENT ON FUNCTION crm_kpi.grant_reader(regrole) IS
    'Grants a role what dashboards and reports need: USAGE on schema crm_kpi, SELECT on the KPI tables, their views and the status tables, EXECUTE on the read-only functions; nothing that writes, refreshes or binds';

-- Nothing that writes, refreshes or binds is executable by PUBLIC: every volatile function of the
-- extension is for its owner (superusers) only, but for the four that a table's owner calls on her
-- own table (they run as the extension's owner, through crm_kpi.<name>_by, which check she owns it).
-- Triggers and event triggers still fire for everyone.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.provolatile = 'v' AND p.prokind IN ('f', 'p')
                AND p.proname NOT IN ('bind_source', 'unbind_source', 'track_lifecycle', 'untrack_lifecycle')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', fn);
    END LOOP;
END $$;
