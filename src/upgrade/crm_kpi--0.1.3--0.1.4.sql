-- crm_kpi 0.1.3 -> 0.1.4: a value a binding cannot convert no longer makes the CRM's write fail. A capture trigger
-- whose keys are expressions (or whose binding has a filter) reads them with a SELECT, apart from the write; a value
-- it cannot convert (a customer id 'oops' cast to bigint) queues a rebuild of the tables the source's kind feeds,
-- with a WARNING, and the refresh reports the error in crm_kpi.status until the row is fixed. The refresh worker
-- leaves a family of tables that failed alone for a while (1 s after the first failure, doubling with each, at most
-- 5 minutes: crm_kpi.status.failures and retry_at) instead of retrying it at every wake; crm_kpi.refresh() called by
-- hand retries it at once.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.4'" to load this file. \quit

CREATE OR REPLACE FUNCTION crm_kpi.capture_sql(kind text, source regclass, event text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b crm_kpi.source_bindings;
    tz text := coalesce((SELECT timezone FROM crm_kpi.engine_state), 'UTC');
    keys text[];
    rows_sql text;
BEGIN
    b := crm_kpi.capture_binding(kind, source);
    IF b.kind IS NULL THEN
        RETURN NULL;
    END IF;
    -- Truncated, or the binding no longer reads the table (a mapped column renamed or dropped): everything the kind
    -- feeds is stale, and the CRM's write goes through; the refresh reports the broken binding until it is fixed.
    IF event = 'truncate' OR EXISTS (SELECT FROM crm_kpi.binding_shape_problems(b.kind, b.source, b.mapping)) THEN
        RETURN format('INSERT INTO crm_kpi.change_queue (target) VALUES (%L)', '*' || b.kind);
    END IF;
    -- One SELECT list per key pair: the day of the time column in the KPI time zone (a date column as it is), the customer.
    SELECT array_agg(format('%s AS day, %s AS customer_id',
                             CASE WHEN dc.column_name IS NULL THEN 'NULL::date'
                                  WHEN dc.data_type = 'date'::regtype
                                  THEN format('CAST(%s AS date)', crm_kpi.mapping_sql(b.mapping -> k.day_column::text))
                                  ELSE format('(CAST(%s AS timestamptz) AT TIME ZONE %L)::date',
                                              crm_kpi.mapping_sql(b.mapping -> k.day_column::text), tz) END,
                             CASE WHEN k.customer_column IS NULL THEN 'NULL::bigint'
                                  ELSE format('CAST(%s AS bigint)', crm_kpi.mapping_sql(b.mapping -> k.customer_column::text)) END)
                     ORDER BY k.day_column, k.customer_column)
      INTO keys
    FROM crm_kpi.capture_keys k
    LEFT JOIN crm_kpi.source_contract dc ON dc.kind = k.kind AND dc.column_name = k.day_column
    WHERE k.kind = capture_sql.kind;
    IF keys IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(format('SELECT %s FROM %I AS src%s', key_list, t,
                             coalesce(' WHERE (' || crm_kpi.mapping_sql(b.mapping -> '_filter') || ')', '')),
                      ' UNION ALL ')
      INTO rows_sql
    FROM unnest(CASE event WHEN 'insert' THEN ARRAY['crm_kpi_new']
                           WHEN 'delete' THEN ARRAY['crm_kpi_old']
                           ELSE ARRAY['crm_kpi_old', 'crm_kpi_new'] END) t,
         unnest(keys) key_list;
    -- A SELECT, which the trigger runs apart from the CRM's write and queues under the kind: a value it cannot
    -- convert queues the whole kind ('*' || kind) with a WARNING instead of failing the write.
    RETURN format('SELECT DISTINCT r.day, r.customer_id FROM (%s) AS r '
                  'WHERE r.day IS NOT NULL OR r.customer_id IS NOT NULL', rows_sql);
END $$;
COMMENT ON FUNCTION crm_kpi.capture_sql(text, regclass, text) IS
    'The statement a capture trigger of a bound source runs for an event (insert, update, delete, truncate): a SELECT of the distinct (day date, customer_id bigint) keys of the transition rows, which the trigger queues under the source''s kind (the whole kind, with a WARNING, when a value cannot be converted); an INSERT of ''*'' || kind when the write makes everything of the kind stale (a TRUNCATE, a binding that no longer reads the table)';

ALTER TABLE crm_kpi.kpi_table_state ADD COLUMN failures integer NOT NULL DEFAULT 0, ADD COLUMN retry_at timestamptz;
COMMENT ON TABLE crm_kpi.kpi_table_state IS
    'Per KPI table: watermark (every change committed before it is reflected), last refresh that touched it, its duration, rows written, last error; failures: refreshes that failed on it in a row (0 after one that succeeds), and retry_at: until when the refresh worker leaves it alone after the last of them (1 s after the first, doubling with each, at most 5 minutes; NULL when it is not failing)';

-- run_engine() takes hold_failed.
DROP FUNCTION crm_kpi.run_engine(boolean, crm_kpi.engine_state, integer, boolean);
CREATE FUNCTION crm_kpi.run_engine(full_rebuild boolean, adopt crm_kpi.engine_state, max_batches integer,
                                   concurrently boolean, hold_failed boolean)
    RETURNS crm_kpi.refresh_history
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC' SET crm_kpi.timezone = 'UTC' SET crm_kpi.active_window = '90 days'
    SET crm_kpi.churn_after = '180 days' SET crm_kpi.loyal_min_tenure = '365 days'
    SET crm_kpi.loyal_min_orders = 5 SET crm_kpi.resolution_sla = '72 hours' SET jit = off
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    checked timestamptz;
    tables jsonb := '{}';
    batches integer := 0;
    keys bigint := 0;
    b record;
    t record;
    rows bigint;
    err text;
    errstate text;
    failed_table text;
    failed jsonb := '{}';  -- tables of the families that failed, with the error
    held jsonb := '{}';    -- tables of the families held back until their retry_at, with their last error
    family_err text;
    rebuilt boolean := false;
    reattach boolean := false;
    run crm_kpi.refresh_history;
BEGIN
    BEGIN
        -- Inside the block: a rebuild that fails keeps the settings the tables were built with.
        IF adopt.timezone IS NOT NULL THEN
            reattach := crm_kpi.adopt_settings(adopt);
        END IF;
        IF full_rebuild THEN
            IF NOT run_engine.concurrently THEN
                -- All at once, in one order: readers that wait for one table hold no other.
                EXECUTE (SELECT 'LOCK TABLE ' || string_agg(format('crm_kpi.%I', k.table_name), ', ' ORDER BY k.position)
                                || ' IN ACCESS EXCLUSIVE MODE' FROM crm_kpi.kpi_tables k);
            END IF;
            checked := clock_timestamp();
            DELETE FROM crm_kpi.change_queue;
            UPDATE crm_kpi.engine_state SET as_of = now(), built_at = now();
            PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
            FOR b IN SELECT s.kind, s.source FROM crm_kpi.source_bindings s LOOP
                IF reattach OR NOT crm_kpi.capture_ok(b.kind, b.source) THEN
                    PERFORM crm_kpi.capture_attach(b.kind, b.source);
                END IF;
            END LOOP;
            FOR t IN SELECT * FROM crm_kpi.kpi_tables ORDER BY position LOOP
                failed_table := t.table_name;
                rows := crm_kpi.replace_all(t.table_name, t.stage_function, t.key_grain, run_engine.concurrently);
                tables := jsonb_set(tables, ARRAY[t.table_name::text], to_jsonb(rows));
            END LOOP;
            failed_table := NULL;
            batches := 1;
        ELSE
            PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
            PERFORM crm_kpi.advance_time(now());
            IF hold_failed THEN
                -- A family that failed is left alone until its retry_at: its failure may come late in a long
                -- computation, and every commit wakes the worker.
                SELECT coalesce(jsonb_object_agg(s.table_name, s.last_error), '{}') INTO held
                FROM crm_kpi.kpi_table_state s WHERE s.retry_at > now() AND s.last_error IS NOT NULL;
                failed := held;
            END IF;
            b := crm_kpi.rebuild_kinds(tables, failed);
            tables := b.tables;
            failed := b.failed;
            rebuilt := tables <> '{}';
        END IF;
        LOOP
            EXIT WHEN max_batches IS NOT NULL AND batches >= max_batches;
            checked := clock_timestamp();
            b := crm_kpi.refresh_batch(tables, failed);
            tables := b.tables;
            failed := b.failed;
            EXIT WHEN b.keys = 0;
            batches := batches + 1;
            keys := keys + b.keys;
        END LOOP;
        IF keys > 0 THEN  -- only a batch that took keys stages rows (a worker finds none most of the time)
            PERFORM crm_kpi.clear_staged();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
        err := format('%s: %s', errstate, err);
        tables := '{}';
        failed := '{}';
        held := '{}';
        rebuilt := false;
    END;
    failed := failed - ARRAY(SELECT jsonb_object_keys(held));
    -- The families that failed in this run, each error once with its tables.
    SELECT string_agg(format('%s: %s', x.names, x.error), '; ' ORDER BY x.first) INTO family_err
    FROM (SELECT f.value #>> '{}' AS error, string_agg(f.key, ', ' ORDER BY k.position) AS names, min(k.position) AS first
          FROM jsonb_each(failed) f JOIN crm_kpi.kpi_tables k ON k.table_name = f.key
          GROUP BY 1) x;
    SELECT NULL, CASE WHEN full_rebuild OR rebuilt THEN 'rebuild' ELSE 'refresh' END, started, clock_timestamp(), batches, keys,
           coalesce((SELECT sum(value::bigint) FROM jsonb_each_text(tables)), 0), tables,
           (SELECT count(*) FROM crm_kpi.change_queue), coalesce(err, family_err)
      INTO run;
    -- A run that found nothing to do is not recorded (a worker wakes every naptime).
    IF full_rebuild OR rebuilt OR keys > 0 OR run.error IS NOT NULL THEN
        INSERT INTO crm_kpi.refresh_history (mode, started_at, finished_at, batches, stale_keys, rows_touched, tables,
                                             pending_after, error)
        VALUES (run.mode, run.started_at, run.finished_at, run.batches, run.stale_keys, run.rows_touched, run.tables,
                run.pending_after, run.error)
        RETURNING * INTO run;
    END IF;
    -- Every change committed before checked (the start of the last batch) was either refreshed or is pending, and a
    -- pending key was queued no later than its change committed: the watermark is the older of checked and the
    -- table's oldest pending key. (One pass over the queue, which may be large, for all the tables.)
    -- (A family that failed, or was held back, left its keys queued, with the times they were queued at.)
    -- A table that failed waits 1 s before the worker tries it again, twice as long after each failure in a row, at
    -- most 5 minutes; one held back keeps its error and retry time.
    WITH pending AS MATERIALIZED (SELECT q.target, min(q.queued_at) AS oldest, crm_kpi.stale_tables(q.target) AS stales
                                  FROM crm_kpi.change_queue q GROUP BY q.target)
    UPDATE crm_kpi.kpi_table_state s SET
        watermark = CASE WHEN err IS NULL
                         THEN greatest(s.watermark,
                                       least(checked, (SELECT min(p.oldest) FROM pending p WHERE s.table_name = ANY(p.stales))))
                         ELSE s.watermark END,
        last_refresh_at = CASE WHEN tables ? s.table_name THEN started ELSE s.last_refresh_at END,
        last_duration = CASE WHEN tables ? s.table_name THEN run.finished_at - started ELSE s.last_duration END,
        rows_touched = CASE WHEN tables ? s.table_name THEN (tables ->> s.table_name)::bigint ELSE s.rows_touched END,
        last_error = CASE WHEN r.failed_now THEN coalesce(err, failed ->> s.table_name)
                          WHEN held ? s.table_name THEN s.last_error END,
        last_error_at = CASE WHEN r.failed_now THEN run.finished_at ELSE s.last_error_at END,
        failures = CASE WHEN r.failed_now THEN s.failures + 1 WHEN held ? s.table_name THEN s.failures ELSE 0 END,
        retry_at = CASE WHEN r.failed_now THEN run.finished_at + least(interval '5 minutes', interval '1 second' * 2 ^ least(s.failures, 9))
                        WHEN held ? s.table_name THEN s.retry_at END
    FROM crm_kpi.kpi_tables k
    CROSS JOIN LATERAL (SELECT err IS NOT NULL OR failed ? k.table_name AS failed_now) r
    WHERE k.table_name = s.table_name AND (err IS NULL OR failed_table IS NULL OR s.table_name = failed_table);
    IF run.run_id IS NOT NULL THEN
        DELETE FROM crm_kpi.refresh_history h
        WHERE h.run_id <= run.run_id - current_setting('crm_kpi.history_limit')::bigint;
    END IF;
    IF err IS NOT NULL THEN
        RAISE WARNING 'crm_kpi refresh failed: %', err
            USING HINT = 'Nothing was written; the stale keys stay queued. See crm_kpi.status.';
    ELSIF family_err IS NOT NULL THEN
        RAISE WARNING 'crm_kpi refresh failed for some KPI tables: %', family_err
            USING HINT = 'The other KPI tables were refreshed; the stale keys of these stay queued. See crm_kpi.status.';
    END IF;
    RETURN run;
END $$;
COMMENT ON FUNCTION crm_kpi.run_engine(boolean, crm_kpi.engine_state, integer, boolean, boolean) IS
    'The work of crm_kpi.refresh() and crm_kpi.rebuild() under the settings the tables are built with (a rebuild first adopts the settings adopt, unless NULL; a failed one keeps the old; not concurrently, it holds every KPI table in ACCESS EXCLUSIVE mode): batches until the queue is empty (or max_batches), recorded in kpi_table_state and (unless there was nothing to do; run_id is then NULL) in refresh_history. A rebuild is all or nothing; a refresh rebuilds the tables of each kind whose rebuild is queued and refreshes each family in a subtransaction, so that a family that fails (a broken binding, a value out of range) leaves its keys queued and its tables as they were, with its error, while the others are refreshed. hold_failed (the worker): a family whose tables failed is left alone, keys queued and error kept, until their kpi_table_state.retry_at';
REVOKE EXECUTE ON FUNCTION crm_kpi.run_engine(boolean, crm_kpi.engine_state, integer, boolean, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION crm_kpi.refresh(max_batches integer DEFAULT NULL) RETURNS crm_kpi.refresh_history
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    full_rebuild boolean;
BEGIN
    IF max_batches < 1 THEN
        RAISE EXCEPTION 'max_batches must be at least 1, not %', max_batches USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM crm_kpi.library_version();  -- loads the library, so that its settings are defined
    -- Each batch must see the keys committed before it (and the watermark assumes it).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the KPI tables are refreshed under READ COMMITTED only, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction.';
    END IF;
    PERFORM pg_advisory_xact_lock(7226110472398251520);
    full_rebuild := (SELECT built_at IS NULL FROM crm_kpi.engine_state)
                    OR EXISTS (SELECT FROM crm_kpi.change_queue WHERE target = '*');
    IF full_rebuild THEN
        PERFORM crm_kpi.lifecycle_classify(now(), 0, 0, NULL, NULL);  -- raises if churn_after <= active_window
        RETURN crm_kpi.run_engine(true, crm_kpi.wanted_settings(now()), max_batches, true, false);
    END IF;
    -- Called by the refresh worker (its backend type is the bgw_type worker.c gives it), it holds back the families
    -- that failed until their retry_at; called by hand, it retries them at once.
    RETURN crm_kpi.run_engine(false, NULL, max_batches, true,
                              coalesce((SELECT a.backend_type = 'crm_kpi worker' FROM pg_stat_get_activity(pg_backend_pid()) a), false));
END $$;
COMMENT ON FUNCTION crm_kpi.refresh(integer) IS
    'Brings the KPI tables up to date: recomputes the stale days, months and customers in batches (all, or max_batches) and what time alone changed, each family in a subtransaction (one that fails keeps its keys queued and its tables as they were, and the others are refreshed; the refresh worker then leaves it alone until its retry_at, a call by hand retries it at once); rebuilds everything instead when never built or a rebuild of everything (*) is queued, and first the tables a kind feeds when a source of that kind was truncated, bound, unbound or altered in what it reads. One refresh at a time; writers never wait for it';

CREATE OR REPLACE FUNCTION crm_kpi.rebuild(concurrently boolean DEFAULT true) RETURNS crm_kpi.refresh_history
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF rebuild.concurrently IS NULL THEN
        RAISE EXCEPTION 'concurrently must be true or false, not NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM crm_kpi.library_version();  -- loads the library, so that its settings are defined
    -- Each batch must see the keys committed before it (and the watermark assumes it).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the KPI tables are refreshed under READ COMMITTED only, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction.';
    END IF;
    PERFORM pg_advisory_xact_lock(7226110472398251520);
    PERFORM crm_kpi.lifecycle_classify(now(), 0, 0, NULL, NULL);  -- raises if churn_after <= active_window
    RETURN crm_kpi.run_engine(true, crm_kpi.wanted_settings(now()), NULL, rebuild.concurrently, false);
END $$;
COMMENT ON FUNCTION crm_kpi.rebuild(boolean) IS
    'Recomputes every KPI table from scratch with the current settings (first fill, after a restore, after crm_kpi.timezone, churn_after or another setting they depend on changed). Concurrently (the default), readers keep the old rows until it commits; not concurrently, faster, and readers of the KPI tables wait for it, as for REFRESH MATERIALIZED VIEW';

CREATE OR REPLACE VIEW crm_kpi.status AS
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
