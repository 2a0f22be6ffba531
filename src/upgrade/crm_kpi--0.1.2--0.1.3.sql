-- crm_kpi 0.1.2 -> 0.1.3: one family of KPI tables that cannot be refreshed no longer holds the others back. A
-- TRUNCATE, a bind, an unbind or DDL changing what a binding reads queues a rebuild of the tables its kind feeds
-- (target * followed by the kind), not of every table; a refresh rebuilds those and refreshes each family in a
-- subtransaction, so that a broken binding or a value it cannot read leaves that family's keys queued and its tables
-- as they were, with its error in crm_kpi.status, while the other families are refreshed.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.3'" to load this file. \quit

CREATE FUNCTION crm_kpi.kind_tables(kind text) RETURNS name[]
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(array_agg(k.table_name ORDER BY k.position), '{}')
            FROM crm_kpi.kpi_tables k
            WHERE kind = ANY(k.queue_targets)
               OR ('customer' = ANY(k.queue_targets)
                   AND EXISTS (SELECT FROM crm_kpi.kpi_tables c WHERE c.key_grain = 'customer' AND kind = ANY(c.queue_targets))));
COMMENT ON FUNCTION crm_kpi.kind_tables(text) IS
    'The KPI tables a kind of source feeds, in refresh order: those listing it among their queue targets and, for a kind the per-customer tables read (orders, customers, interactions), every table kept from the customers; what a TRUNCATE, bind, unbind or DDL of a source of that kind makes the next refresh rebuild';

CREATE FUNCTION crm_kpi.stale_tables(target text) RETURNS name[]
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN target = '*' THEN (SELECT array_agg(k.table_name ORDER BY k.position) FROM crm_kpi.kpi_tables k)
                WHEN left(target, 1) = '*' THEN crm_kpi.kind_tables(substr(target, 2))
                ELSE (SELECT coalesce(array_agg(k.table_name ORDER BY k.position), '{}')
                      FROM crm_kpi.kpi_tables k WHERE target = ANY(k.queue_targets)) END;
COMMENT ON FUNCTION crm_kpi.stale_tables(text) IS
    'The KPI tables a pending key of crm_kpi.change_queue with this target may change: every one for *, those its kind feeds for * followed by a kind (crm_kpi.kind_tables), else those listing the target among their queue targets';

CREATE FUNCTION crm_kpi.kind_rebuild_reason(targets text[]) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT format('a bound %s source was truncated, bound, unbound, or altered in what it reads: the next refresh rebuilds %s',
                          (SELECT string_agg(DISTINCT substr(g, 2), ', ') FROM unnest(targets) g),
                          string_agg(k.table_name, ', ' ORDER BY k.position))
            FROM crm_kpi.kpi_tables k
            WHERE EXISTS (SELECT FROM unnest(targets) g WHERE k.table_name = ANY(crm_kpi.stale_tables(g)))
            HAVING count(*) > 0);
COMMENT ON FUNCTION crm_kpi.kind_rebuild_reason(text[]) IS
    'Why a rebuild of the tables some kinds feed is queued (targets * followed by a kind, as in crm_kpi.change_queue): the kinds, and the tables the next refresh rebuilds (crm_kpi.kind_tables); NULL when they feed none';

CREATE FUNCTION crm_kpi.settings_rebuild_reason() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library, which defines the settings
                        WHEN e.built_at IS NOT NULL THEN nullif(concat_ws('; ',
            CASE WHEN e.timezone <> current_setting('crm_kpi.timezone')
                 THEN format('crm_kpi.timezone is %s, the tables use %s', current_setting('crm_kpi.timezone'), e.timezone) END,
            CASE WHEN e.active_window <> current_setting('crm_kpi.active_window')::interval
                 THEN format('crm_kpi.active_window is %s, the tables use %s', current_setting('crm_kpi.active_window'), e.active_window) END,
            CASE WHEN e.churn_after <> current_setting('crm_kpi.churn_after')::interval
                 THEN format('crm_kpi.churn_after is %s, the tables use %s', current_setting('crm_kpi.churn_after'), e.churn_after) END,
            CASE WHEN e.loyal_min_tenure <> current_setting('crm_kpi.loyal_min_tenure')::interval
                 THEN format('crm_kpi.loyal_min_tenure is %s, the tables use %s', current_setting('crm_kpi.loyal_min_tenure'), e.loyal_min_tenure) END,
            CASE WHEN e.loyal_min_orders <> current_setting('crm_kpi.loyal_min_orders')::integer
                 THEN format('crm_kpi.loyal_min_orders is %s, the tables use %s', current_setting('crm_kpi.loyal_min_orders'), e.loyal_min_orders) END,
            CASE WHEN e.resolution_sla <> current_setting('crm_kpi.resolution_sla')::interval
                 THEN format('crm_kpi.resolution_sla is %s, the tables use %s', current_setting('crm_kpi.resolution_sla'), e.resolution_sla) END), '')
                   END
            FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.settings_rebuild_reason() IS
    'The settings the KPI tables depend on (crm_kpi.timezone, active_window, churn_after, loyal_min_tenure, loyal_min_orders, resolution_sla) whose value differs from the one they were built with (engine_state), each with both values; NULL when none does or they were never built';

CREATE FUNCTION crm_kpi.rebuild_reason_for(markers text[]) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE
        WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library, which defines the settings
        WHEN e.built_at IS NULL THEN 'never built (first fill, or restored from a dump)'
        WHEN '*' = ANY(markers) THEN 'a bound source was truncated, bound, unbound, or altered in what it reads'
        ELSE nullif(concat_ws('; ', crm_kpi.kind_rebuild_reason(markers), crm_kpi.settings_rebuild_reason()), '')
        END FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.rebuild_reason_for(text[]) IS
    'Why KPI tables need a rebuild, given the rebuild markers of crm_kpi.change_queue that concern them (* for every table, * followed by a kind for the tables it feeds): never built, a rebuild of everything queued, the kinds whose tables the next refresh rebuilds, the settings that changed; NULL when none applies';

CREATE OR REPLACE FUNCTION crm_kpi.rebuild_reason() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.rebuild_reason_for(ARRAY(SELECT DISTINCT q.target FROM crm_kpi.change_queue q WHERE left(q.target, 1) = '*'));
COMMENT ON FUNCTION crm_kpi.rebuild_reason() IS
    'Why the KPI tables need crm_kpi.rebuild(): never built, a source truncated, bound, unbound or altered in what it reads (of a kind: the next refresh rebuilds the tables it feeds), or a setting they depend on changed since; NULL when they do not';

CREATE FUNCTION crm_kpi.add_failure(failed jsonb, group_tables name[], errstate text, message text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN failed || (SELECT jsonb_object_agg(t, format('%s: %s', errstate, message)) FROM unnest(group_tables) t);
COMMENT ON FUNCTION crm_kpi.add_failure(jsonb, name[], text, text) IS
    'The failures of a refresh run (KPI table -> error) with each table of a family that failed added, its error written SQLSTATE: message';

CREATE FUNCTION crm_kpi.rebuild_kinds(INOUT tables jsonb, INOUT failed jsonb) RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
    t record;
    b record;
    part jsonb;
    err text;
    errstate text;
BEGIN
    -- The largest group first: the one of the customers holds marketing_monthly, which marketing_spend feeds too.
    FOR g IN SELECT x.group_tables, array_agg(x.target) AS targets
             FROM (SELECT DISTINCT q.target, crm_kpi.kind_tables(substr(q.target, 2)) AS group_tables
                   FROM crm_kpi.change_queue q WHERE left(q.target, 1) = '*' AND q.target <> '*') x
             GROUP BY x.group_tables ORDER BY cardinality(x.group_tables) DESC, min(x.target) LOOP
        CONTINUE WHEN failed ?| g.group_tables::text[];
        part := tables;
        BEGIN
            -- The rebuild's markers, and the pending keys it covers: those whose every table it rebuilds (deleted
            -- before it reads the sources, as a rebuild of everything empties the queue; a key committed later stays).
            DELETE FROM crm_kpi.change_queue q
            WHERE q.target = ANY(g.targets)
               OR q.target IN (SELECT x.target FROM (SELECT DISTINCT unnest(k.queue_targets) AS target FROM crm_kpi.kpi_tables k) x
                               WHERE crm_kpi.stale_tables(x.target) <@ g.group_tables);
            FOR b IN SELECT s.kind, s.source FROM crm_kpi.source_bindings s WHERE '*' || s.kind = ANY(g.targets) LOOP
                IF NOT crm_kpi.capture_ok(b.kind, b.source) THEN
                    PERFORM crm_kpi.capture_attach(b.kind, b.source);
                END IF;
            END LOOP;
            FOR t IN SELECT k.table_name, k.stage_function, k.key_grain FROM crm_kpi.kpi_tables k
                     WHERE k.table_name = ANY(g.group_tables) AND NOT part ? k.table_name ORDER BY k.position LOOP
                PERFORM crm_kpi.report_activity(format('rebuilding %s (%s)', t.table_name, array_to_string(g.targets, ', ')));
                part := jsonb_set(part, ARRAY[t.table_name::text],
                                  to_jsonb(crm_kpi.replace_all(t.table_name, t.stage_function, t.key_grain, true)));
            END LOOP;
            tables := part;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
            failed := crm_kpi.add_failure(failed, g.group_tables, errstate, err);
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.rebuild_kinds(jsonb, jsonb) IS
    'Rebuilds (concurrently) the KPI tables of each kind whose rebuild is queued (target * followed by the kind; crm_kpi.kind_tables), each group of tables in a subtransaction, and drops the pending keys whose every table it rebuilds: adds the rows written per table to tables; a group that fails stays queued with those keys, written nowhere, and its tables with the error go into failed';

-- refresh_batch() takes and returns the failed families too.
DROP FUNCTION crm_kpi.refresh_batch(jsonb);

CREATE FUNCTION crm_kpi.refresh_batch(INOUT tables jsonb, INOUT failed jsonb, OUT keys bigint) RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := current_setting('crm_kpi.refresh_batch_size')::integer;
    -- what a batch of customers writes
    customer_tables name[] := ARRAY(SELECT k.table_name FROM crm_kpi.kpi_tables k
                                    WHERE k.key_grain = 'customer' OR k.delta_function IS NOT NULL ORDER BY k.position);
    ids bigint[];
    days date[];
    t record;
    g record;
    rows bigint;
    part jsonb;
    err text;
    errstate text;
BEGIN
    -- Keys captured under a source's kind become keys of the KPI families they make stale.
    -- A routed key keeps the time its oldest change was queued at (the watermark is taken from the pending keys).
    WITH taken AS (DELETE FROM crm_kpi.change_queue q
                   WHERE q.target IN (SELECT k.kind FROM crm_kpi.capture_keys k)
                   RETURNING q.target, q.day, q.customer_id, q.queued_at)
    INSERT INTO crm_kpi.change_queue (target, day, customer_id, queued_at)
    SELECT x.target, x.day, x.customer_id, min(x.queued_at)
    FROM (SELECT r.target, CASE r.grain WHEN 'month' THEN date_trunc('month', k.day)::date ELSE k.day END AS day,
                 NULL::bigint AS customer_id, k.queued_at
          FROM taken k JOIN crm_kpi.queue_routes r ON r.kind = k.target
          WHERE k.day IS NOT NULL AND (k.customer_id IS NULL OR NOT r.customerless_only)
          UNION ALL
          SELECT 'customer', NULL, k.customer_id, k.queued_at FROM taken k WHERE k.customer_id IS NOT NULL) x
    GROUP BY x.target, x.day, x.customer_id;
    GET DIAGNOSTICS rows = ROW_COUNT;
    IF rows > 0 THEN
        -- The queue's size swings between refreshes: without fresh statistics, the joins below may be planned
        -- for an empty queue (nested loops over thousands of keys).
        ANALYZE crm_kpi.change_queue;
    END IF;
    keys := 0;
    IF NOT failed ?| customer_tables::text[] THEN
        part := tables;
        BEGIN
            WITH picked AS (SELECT DISTINCT q.customer_id FROM crm_kpi.change_queue q
                            WHERE q.target = 'customer' AND q.customer_id IS NOT NULL LIMIT n),
            taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                      WHERE q.target = 'customer' AND q.customer_id = p.customer_id RETURNING q.customer_id)
            SELECT array_agg(DISTINCT customer_id) INTO ids FROM taken;
            IF ids IS NOT NULL THEN
                PERFORM crm_kpi.report_activity(format('customers, %s of them (%s keys still queued)',
                                                       cardinality(ids), (SELECT count(*) FROM crm_kpi.change_queue)));
                FOR t IN SELECT k.table_name, k.stage_function FROM crm_kpi.kpi_tables k WHERE k.key_grain = 'customer'
                         ORDER BY k.position LOOP
                    PERFORM crm_kpi.stage_fresh(t.table_name, ids, t.stage_function);
                END LOOP;
                -- Before the customer tables are replaced: the tables summed over customers change by fresh - stored.
                FOR t IN SELECT k.table_name, k.delta_function FROM crm_kpi.kpi_tables k
                         WHERE k.delta_function IS NOT NULL ORDER BY k.position LOOP
                    EXECUTE format('SELECT crm_kpi.%I($1)', t.delta_function) INTO rows USING ids;
                    part := jsonb_set(part, ARRAY[t.table_name::text], to_jsonb(coalesce((part ->> t.table_name)::bigint, 0) + rows));
                END LOOP;
                FOR t IN SELECT k.table_name FROM crm_kpi.kpi_tables k WHERE k.key_grain = 'customer' ORDER BY k.position LOOP
                    rows := crm_kpi.apply_fresh(t.table_name, ids);
                    part := jsonb_set(part, ARRAY[t.table_name::text], to_jsonb(coalesce((part ->> t.table_name)::bigint, 0) + rows));
                END LOOP;
                tables := part;
                keys := cardinality(ids);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
            failed := crm_kpi.add_failure(failed, customer_tables, errstate, err);
        END;
        IF keys > 0 THEN
            RETURN;
        END IF;
    END IF;
    FOR g IN SELECT k.own_target, k.key_grain, array_agg(k.table_name ORDER BY k.position) AS group_tables
             FROM crm_kpi.kpi_tables k WHERE k.key_grain IN ('day', 'month')
             GROUP BY k.own_target, k.key_grain ORDER BY min(k.position) LOOP
        CONTINUE WHEN failed ?| g.group_tables::text[];
        part := tables;
        BEGIN
            WITH picked AS (SELECT DISTINCT q.day FROM crm_kpi.change_queue q
                            WHERE q.target = g.own_target AND q.day IS NOT NULL LIMIT n),
            taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                      WHERE q.target = g.own_target AND q.day = p.day RETURNING q.day)
            SELECT array_agg(DISTINCT taken.day) INTO days FROM taken;
            IF days IS NOT NULL THEN
                FOR t IN SELECT k.table_name, k.stage_function FROM crm_kpi.kpi_tables k
                         WHERE k.table_name = ANY(g.group_tables) ORDER BY k.position LOOP
                    PERFORM crm_kpi.report_activity(format('%s, %s %s (%s keys still queued)', t.table_name,
                                                           cardinality(days), g.key_grain || 's',
                                                           (SELECT count(*) FROM crm_kpi.change_queue)));
                    PERFORM crm_kpi.stage_fresh(t.table_name, days, t.stage_function);
                    rows := crm_kpi.apply_fresh(t.table_name, days);
                    part := jsonb_set(part, ARRAY[t.table_name::text], to_jsonb(coalesce((part ->> t.table_name)::bigint, 0) + rows));
                END LOOP;
                tables := part;
                keys := keys + cardinality(days);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
            failed := crm_kpi.add_failure(failed, g.group_tables, errstate, err);
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.refresh_batch(jsonb, jsonb) IS
    'Takes one batch of stale keys from the queue (customers first, then days and months, at most crm_kpi.refresh_batch_size of each family) and recomputes them, each family in a subtransaction; adds the rows written to the per-table counts (tables); a family that fails keeps its keys queued and writes nothing, and its tables with the error go into failed, whose tables it leaves alone';

CREATE OR REPLACE FUNCTION crm_kpi.run_engine(full_rebuild boolean, adopt crm_kpi.engine_state, max_batches integer,
                                   concurrently boolean)
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
        rebuilt := false;
    END;
    -- The families that failed, each error once with its tables.
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
    -- (A family that failed left its keys queued, with the times they were queued at.)
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
        last_error = coalesce(err, failed ->> s.table_name),
        last_error_at = CASE WHEN err IS NOT NULL OR failed ? s.table_name THEN run.finished_at ELSE s.last_error_at END
    FROM crm_kpi.kpi_tables k
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
COMMENT ON FUNCTION crm_kpi.run_engine(boolean, crm_kpi.engine_state, integer, boolean) IS
    'The work of crm_kpi.refresh() and crm_kpi.rebuild() under the settings the tables are built with (a rebuild first adopts the settings adopt, unless NULL; a failed one keeps the old; not concurrently, it holds every KPI table in ACCESS EXCLUSIVE mode): batches until the queue is empty (or max_batches), recorded in kpi_table_state and (unless there was nothing to do; run_id is then NULL) in refresh_history. A rebuild is all or nothing; a refresh rebuilds the tables of each kind whose rebuild is queued and refreshes each family in a subtransaction, so that a family that fails (a broken binding, a value out of range) leaves its keys queued and its tables as they were, with its error, while the others are refreshed';

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
       w.last_error AS worker_last_error
FROM crm_kpi.kpi_tables k
JOIN crm_kpi.kpi_table_state s ON s.table_name = k.table_name
CROSS JOIN crm_kpi.engine_state e
CROSS JOIN crm_kpi.worker_status() w;
COMMENT ON VIEW crm_kpi.status IS
    'One row per KPI table: watermark (changes committed before it are reflected), stale keys pending, the oldest one''s queue time and age (lag), last refresh that touched it, its duration and rows written, last error, the instant time-dependent KPIs are taken at, why it needs a rebuild (NULL when it does not; a rebuild of a kind''s tables shows on those only), and this database''s refresh worker (pid, state, last run, last error)';

CREATE OR REPLACE FUNCTION crm_kpi.unbind_source_by(kind text, source regclass, binder regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held boolean;
BEGIN
    IF NOT pg_has_role(binder, (SELECT relowner FROM pg_class WHERE oid = source), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM crm_kpi.pending_bindings p WHERE p.kind = unbind_source_by.kind AND p.source = unbind_source_by.source;
    held := FOUND;
    DELETE FROM crm_kpi.source_bindings b WHERE b.kind = unbind_source_by.kind AND b.source = unbind_source_by.source;
    IF NOT FOUND AND NOT held THEN
        RAISE EXCEPTION '% is not bound as the % source', source, kind USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM crm_kpi.capture_detach(kind, source);
    INSERT INTO crm_kpi.change_queue (target) VALUES ('*' || kind);
END $$;
COMMENT ON FUNCTION crm_kpi.unbind_source_by(text, regclass, regrole) IS
    'What crm_kpi.unbind_source does, run as the extension''s owner for the role that called it (who must own the table); executable by the extension''s owner only';

CREATE OR REPLACE FUNCTION crm_kpi.forget_dropped_tables() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM crm_kpi.lifecycle_tracking t
    WHERE t.source_table::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                                  WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0);
    DELETE FROM crm_kpi.pending_bindings p
    WHERE p.source::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                            WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0);
    WITH dropped AS (DELETE FROM crm_kpi.source_bindings b
                     WHERE b.source::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                                             WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0)
                     RETURNING b.kind)
    INSERT INTO crm_kpi.change_queue (target) SELECT DISTINCT '*' || dropped.kind FROM dropped;
END $$;
COMMENT ON FUNCTION crm_kpi.forget_dropped_tables() IS
    'Event trigger: forgets the bindings (held ones too) and lifecycle tracking of tables that are dropped (lifecycle history stays)';

CREATE OR REPLACE FUNCTION crm_kpi.hold_restored_binding() RETURNS trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT crm_kpi.capture_ok(NEW.kind, NEW.source) THEN
        -- A parallel restore creates triggers in other sessions: serialized with crm_kpi.bind_restored(),
        -- one of the two sees what the other did.
        PERFORM pg_advisory_xact_lock(7226110472398251521);
        PERFORM crm_kpi.adopt_capture_triggers(NEW.kind, NEW.source);  -- restored before the binding
    END IF;
    IF crm_kpi.capture_ok(NEW.kind, NEW.source) THEN
        -- Bound (bind_source attaches the triggers first), restored after its triggers, or a view or a
        -- kind that needs no capture: the KPI tables are rebuilt.
        INSERT INTO crm_kpi.change_queue (target) VALUES ('*' || NEW.kind);
        RETURN NEW;
    END IF;
    INSERT INTO crm_kpi.pending_bindings AS p (kind, source, mapping, bound_by, bound_at)
    VALUES (NEW.kind, NEW.source, NEW.mapping, NEW.bound_by, NEW.bound_at)
    ON CONFLICT ON CONSTRAINT pending_bindings_pkey
    DO UPDATE SET mapping = EXCLUDED.mapping, bound_by = EXCLUDED.bound_by, bound_at = EXCLUDED.bound_at;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.hold_restored_binding() IS
    'Trigger of crm_kpi.source_bindings: a binding written while its table lacks the capture triggers (restored from a dump before them) is held in crm_kpi.pending_bindings instead; any other queues a rebuild of the KPI tables its kind feeds (target * followed by the kind)';

CREATE OR REPLACE FUNCTION crm_kpi.watch_bindings() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    changed text[] := '{}';
BEGIN
    FOR b IN SELECT s.kind, s.source, s.mapping FROM crm_kpi.source_bindings s ORDER BY s.kind, s.source LOOP
        IF crm_kpi.record_binding_shape(b.kind, b.source, b.mapping) THEN
            changed := changed || b.kind;
        END IF;
    END LOOP;
    -- A table just created (a new partition of a bound source, say) holds no row yet.
    IF TG_TAG <> 'CREATE TABLE' THEN
        INSERT INTO crm_kpi.change_queue (target) SELECT DISTINCT '*' || k FROM unnest(changed) k;
    END IF;
END $$;
COMMENT ON FUNCTION crm_kpi.watch_bindings() IS
    'Event trigger: when DDL changes what a bound source reads (its fingerprint, crm_kpi.binding_shape), queues a rebuild of the KPI tables its kind feeds (target * followed by the kind); a new table only updates the fingerprints';

CREATE OR REPLACE FUNCTION crm_kpi.watch_rewrites() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO crm_kpi.change_queue (target)
    SELECT DISTINCT '*' || s.kind FROM crm_kpi.source_bindings s
    WHERE pg_event_trigger_table_rewrite_oid() IN (SELECT crm_kpi.binding_reads(s.source));
END $$;
COMMENT ON FUNCTION crm_kpi.watch_rewrites() IS
    'Event trigger: an ALTER TABLE that rewrites a table a bound source reads (a column type changed with USING, say) queues a rebuild of the KPI tables its kind feeds (target * followed by the kind)';

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
    RETURN format('INSERT INTO crm_kpi.change_queue (target, day, customer_id) '
                  'SELECT DISTINCT %L, r.day, r.customer_id FROM (%s) AS r '
                  'WHERE r.day IS NOT NULL OR r.customer_id IS NOT NULL', kind, rows_sql);
END $$;
COMMENT ON FUNCTION crm_kpi.capture_sql(text, regclass, text) IS
    'The statement a capture trigger of a bound source runs for an event (insert, update, delete, truncate): it queues, once each, the (day, customer) keys of the transition rows under the source''s kind';

-- data_quality(): the day of the last refresh computed once.
CREATE OR REPLACE FUNCTION crm_kpi.data_quality()
    RETURNS TABLE (check_name text, category text, source text, affected bigint, total bigint, pct numeric, detail text)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH e AS (SELECT t.today, t.today_text,
                      'after the day of the last refresh (' || t.today_text || ')' AS after,
                      -- a century back: a date before it is most likely mistyped (year 1 for 2021, say)
                      (t.today - interval '100 years')::date AS cutoff,
                      'more than 100 years before the day of the last refresh (' || t.today_text || ')' AS before
               FROM (SELECT d.today, coalesce(d.today::text, 'none yet') AS today_text
                     FROM (SELECT (s.as_of AT TIME ZONE s.timezone)::date AS today FROM crm_kpi.engine_state s) d) t),
    cs AS (SELECT count(*) AS customers,
                  count(*) FILTER (WHERE s.acquisition_channel IS NULL) AS no_channel,
                  count(*) FILTER (WHERE s.created_at IS NULL) AS no_created,
                  count(*) FILTER (WHERE s.orders > 0) AS buyers,
                  count(*) FILTER (WHERE s.orders > 0 AND s.interactions = 0) AS silent_buyers,
                  count(*) FILTER (WHERE s.created_at > s.first_order_at) AS created_late,
                  coalesce(sum(s.orders), 0)::bigint AS orders, coalesce(sum(s.revenue), 0) AS revenue
           FROM crm_kpi.customer_stats s),
    sd AS (SELECT coalesce(sum(d.orders), 0)::bigint AS orders, coalesce(sum(d.revenue), 0) AS revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.rep_id IS NULL), 0)::bigint AS no_rep,
                  coalesce(sum(d.revenue) FILTER (WHERE d.rep_id IS NULL), 0) AS no_rep_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.channel IS NULL), 0)::bigint AS no_channel,
                  coalesce(sum(d.revenue) FILTER (WHERE d.channel IS NULL), 0) AS no_channel_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.day <= e.today), 0)::bigint AS to_date,
                  coalesce(sum(d.revenue) FILTER (WHERE d.day <= e.today), 0) AS to_date_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today AND d.orders > 0) AS last_future,
                  coalesce(sum(d.orders) FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff AND d.orders > 0) AS first_ancient
           FROM crm_kpi.sales_daily d CROSS JOIN e),
    pd AS (SELECT coalesce(sum(d.created), 0)::bigint AS created,
                  coalesce(sum(d.created) FILTER (WHERE d.rep_id IS NULL), 0)::bigint AS no_rep,
                  coalesce(sum(d.won), 0)::bigint AS won,
                  coalesce(sum(crm_kpi.count(d.sales_cycle)), 0)::bigint AS won_with_cycle,
                  coalesce(sum(d.created) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today AND d.created > 0) AS last_future,
                  coalesce(sum(d.created) FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff AND d.created > 0) AS first_ancient
           FROM crm_kpi.pipeline_daily d CROSS JOIN e),
    td AS (SELECT coalesce(sum(d.opened), 0)::bigint AS opened,
                  coalesce(sum(d.unanswered), 0)::bigint AS unanswered,
                  coalesce(sum(d.opened) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today) AS last_future,
                  coalesce(sum(d.opened) FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff AND d.opened > 0) AS first_ancient
           FROM crm_kpi.service_daily d CROSS JOIN e),
    vd AS (SELECT coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0)), 0)::bigint
                      AS responses,
                  coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0))
                      FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today) AS last_future,
                  coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0))
                      FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff) AS first_ancient
           FROM crm_kpi.satisfaction_daily d CROSS JOIN e),
    mc AS (SELECT m.channel, sum(m.spend) AS spend, sum(m.new_customers) AS acquired
           FROM crm_kpi.marketing_monthly m WHERE m.channel IS NOT NULL GROUP BY m.channel),
    mk AS (SELECT count(*) FILTER (WHERE mc.spend > 0) AS spending,
                  count(*) FILTER (WHERE mc.spend > 0 AND mc.acquired = 0) AS spend_no_customers,
                  string_agg(format('%s (spend: %s)', mc.channel, mc.spend), ', ' ORDER BY mc.channel)
                      FILTER (WHERE mc.spend > 0 AND mc.acquired = 0) AS spend_no_customers_list,
                  count(*) FILTER (WHERE mc.acquired > 0) AS acquiring,
                  count(*) FILTER (WHERE mc.acquired > 0 AND mc.spend = 0) AS customers_no_spend,
                  string_agg(format('%s (new customers: %s)', mc.channel, mc.acquired), ', ' ORDER BY mc.channel)
                      FILTER (WHERE mc.acquired > 0 AND mc.spend = 0) AS customers_no_spend_list
           FROM mc)
    SELECT c.check_name, c.category, c.source, c.affected, c.total, 100 * c.affected::numeric / nullif(c.total, 0), c.detail
    FROM cs, sd, pd, td, vd, mk, e, LATERAL (VALUES
        (1, 'customers without acquisition channel', 'completeness', 'customers', cs.no_channel, cs.customers,
         'customers whose acquisition_channel is NULL: their orders, new customers and CAC have no channel'),
        (2, 'customers without creation date', 'completeness', 'customers', cs.no_created, cs.customers,
         'customers whose created_at is NULL: they are in no lead cohort (lead-to-customer conversion)'),
        (3, 'completed orders without rep', 'completeness', 'orders', sd.no_rep, sd.orders,
         format('completed orders whose rep_id is NULL, %s of revenue %s', sd.no_rep_revenue, sd.revenue)),
        (4, 'completed orders without acquisition channel', 'completeness', 'orders', sd.no_channel, sd.orders,
         format('completed orders of customers without acquisition channel or not in the customers source, %s of revenue %s',
                sd.no_channel_revenue, sd.revenue)),
        (5, 'opportunities without rep', 'completeness', 'opportunities', pd.no_rep, pd.created,
         'opportunities (with a creation date) whose rep_id is NULL'),
        (6, 'won opportunities without creation date', 'completeness', 'opportunities', pd.won - pd.won_with_cycle, pd.won,
         'won opportunities whose created_at is NULL: no sales cycle, and not counted as created'),
        (7, 'tickets without first response', 'completeness', 'tickets', td.unanswered, td.opened,
         'tickets whose first_response_at is NULL (never answered, or not yet)'),
        (8, 'buyers without interaction', 'completeness', 'interactions', cs.silent_buyers, cs.buyers,
         'customers with a completed order up to the last refresh and no interaction logged'),
        (9, 'completed orders of unknown customers', 'orphans', 'orders', sd.to_date - cs.orders, sd.to_date,
         format('completed orders dated up to the day of the last refresh (%s) whose customer_id is not in the '
                'customers source, %s of revenue %s', e.today_text, sd.to_date_revenue - cs.revenue, sd.to_date_revenue)),
        (10, 'customers created after their first order', 'consistency', 'customers', cs.created_late, cs.buyers,
         'customers who have bought and whose created_at (lead created) is later than their first completed order'),
        (11, 'marketing channels without new customers', 'consistency', 'marketing_spend', mk.spend_no_customers, mk.spending,
         coalesce('channels with spend that acquired no customer (CAC undefined): ' || mk.spend_no_customers_list,
                  'every channel with spend acquired customers')),
        (12, 'acquisition channels without marketing spend', 'consistency', 'customers', mk.customers_no_spend, mk.acquiring,
         coalesce('channels of new customers with no spend (CAC 0): ' || mk.customers_no_spend_list,
                  'every channel that acquired customers has spend')),
        (13, 'completed orders dated in the future', 'timeliness', 'orders', sd.future, sd.orders,
         'completed orders dated ' || e.after || coalesce(', the latest on ' || sd.last_future, '')),
        (14, 'opportunities created in the future', 'timeliness', 'opportunities', pd.future, pd.created,
         'opportunities created ' || e.after || coalesce(', the latest on ' || pd.last_future, '')),
        (15, 'tickets opened in the future', 'timeliness', 'tickets', td.future, td.opened,
         'tickets opened ' || e.after || coalesce(', the latest on ' || td.last_future, '')),
        (16, 'survey responses answered in the future', 'timeliness', 'survey_responses', vd.future, vd.responses,
         'NPS and CSAT responses answered ' || e.after || coalesce(', the latest on ' || vd.last_future, '')),
        (17, 'completed orders dated over 100 years ago', 'timeliness', 'orders', sd.ancient, sd.orders,
         'completed orders dated ' || e.before || coalesce(', the earliest on ' || sd.first_ancient, '')),
        (18, 'opportunities created over 100 years ago', 'timeliness', 'opportunities', pd.ancient, pd.created,
         'opportunities created ' || e.before || coalesce(', the earliest on ' || pd.first_ancient, '')),
        (19, 'tickets opened over 100 years ago', 'timeliness', 'tickets', td.ancient, td.opened,
         'tickets opened ' || e.before || coalesce(', the earliest on ' || td.first_ancient, '')),
        (20, 'survey responses answered over 100 years ago', 'timeliness', 'survey_responses', vd.ancient, vd.responses,
         'NPS and CSAT responses answered ' || e.before || coalesce(', the earliest on ' || vd.first_ancient, ''))
    ) AS c (ord, check_name, category, source, affected, total, detail)
    ORDER BY c.ord;
END;
COMMENT ON FUNCTION crm_kpi.data_quality() IS
    'Data-quality checks read from the KPI tables (never the sources), one row each: rows affected out of total and their share (%, NULL when total is 0). Completeness (customers without channel or creation date, orders and opportunities without rep, orders without channel, won opportunities without creation date, unanswered tickets, buyers without interaction), orphans (completed orders whose customer is not in the customers source), consistency (customers created after their first order, channels with spend and no new customers or the reverse), timeliness (orders, opportunities, tickets, responses dated after the day of the last refresh, or more than 100 years before it: most likely mistyped). Exact as of the last finished refresh';

COMMENT ON FUNCTION crm_kpi.unbind_source(text, regclass) IS
    'Removes a binding and its capture triggers (owner only); the table stays as it was, and the KPI tables it fed (crm_kpi.kind_tables) are rebuilt at the next refresh. Runs as the extension''s owner (crm_kpi.unbind_source_by) for its caller';

COMMENT ON FUNCTION crm_kpi.refresh(integer) IS
    'Brings the KPI tables up to date: recomputes the stale days, months and customers in batches (all, or max_batches) and what time alone changed, each family in a subtransaction (one that fails keeps its keys queued and its tables as they were, and the others are refreshed); rebuilds everything instead when never built or a rebuild of everything (*) is queued, and first the tables a kind feeds when a source of that kind was truncated, bound, unbound or altered in what it reads. One refresh at a time; writers never wait for it';

COMMENT ON EVENT TRIGGER crm_kpi_watch_bindings IS
    'Queues a rebuild of the KPI tables the kind of a bound source feeds when DDL changes what it reads';

COMMENT ON EVENT TRIGGER crm_kpi_watch_rewrites IS
    'Queues a rebuild of the KPI tables the kind of a bound source feeds when ALTER TABLE rewrites a table it reads';

COMMENT ON TABLE crm_kpi.change_queue IS
    'Stale keys. Capture triggers append, under the source''s kind, the day and/or customer of each changed row (once per statement); the refresh engine turns them into days or months of KPI families (sales, cohort, pipeline, service, satisfaction, marketing, churn) and customers (target customer), deduplicated. Target ''*'' followed by a kind means every KPI table that kind feeds (crm_kpi.kind_tables: a TRUNCATE, a bind, an unbind, DDL changing what a binding reads), and ''*'' alone every KPI table: the next refresh rebuilds them. Append-only for writers';

-- As every volatile function of the extension (src/reader.sql): its owner's only.
REVOKE EXECUTE ON FUNCTION crm_kpi.rebuild_kinds(jsonb, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm_kpi.refresh_batch(jsonb, jsonb) FROM PUBLIC;
