-- worker.sql: the background workers seen from SQL: wake, wait, status.

CREATE FUNCTION crm_kpi.request_refresh() RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_request_refresh'
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION crm_kpi.request_refresh() IS
    'Wakes this database''s refresh worker at once; false when no enabled worker runs (library not preloaded, crm_kpi.enabled off)';

CREATE FUNCTION crm_kpi.report_activity(activity text) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_report_activity'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.report_activity(text) IS
    'In a refresh worker, sets its pg_stat_activity.query to what it is doing (which table, how far); does nothing in other sessions';

CREATE FUNCTION crm_kpi.worker_created() RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_worker_created'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.worker_created() IS
    'Asks the launcher for a refresh worker in this database once the current transaction commits (run by CREATE EXTENSION); false when not preloaded';

CREATE FUNCTION crm_kpi.worker_status(OUT pid integer, OUT state text, OUT started_at timestamptz,
                                      OUT last_run_at timestamptz, OUT last_error text, OUT last_error_at timestamptz)
    RETURNS record
    AS 'MODULE_PATHNAME', 'crm_kpi_worker_status'
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION crm_kpi.worker_status() IS
    'This database''s refresh worker: pid (NULL when none runs), state (starting, idle, refreshing, backoff, disabled, none, not preloaded), when it started, its last run, its last error';

CREATE FUNCTION crm_kpi.wait_for_refresh(timeout interval DEFAULT '60 seconds') RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    called timestamptz := clock_timestamp();
    deadline timestamptz := clock_timestamp() + timeout;
    pause double precision := 0.005;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'crm_kpi.wait_for_refresh() needs a new snapshot per statement'
            USING ERRCODE = 'active_sql_transaction', HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction.';
    END IF;
    IF NOT crm_kpi.request_refresh() THEN
        -- No worker: do the refresh here.
        PERFORM crm_kpi.refresh();
        RETURN true;
    END IF;
    LOOP
        -- Every KPI table's watermark is past the call: a refresh that started after it found nothing pending.
        IF (SELECT min(coalesce(s.watermark, '-infinity')) >= called FROM crm_kpi.kpi_table_state s) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(pause);
        pause := least(pause * 2, 0.1);
        PERFORM crm_kpi.request_refresh();
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.wait_for_refresh(interval) IS
    'Returns true once every change committed before the call is reflected in the KPI tables (the worker is woken and polled, with growing pauses up to 0.1 s), false at the timeout; without a worker it runs crm_kpi.refresh() itself';

-- A new database with the extension gets its worker once CREATE EXTENSION commits.
SELECT crm_kpi.worker_created();
