-- refresh.sql: the refresh engine: stale keys in bounded batches, time passing, families that failed held back, and
-- crm_kpi.refresh() and crm_kpi.rebuild().

-- The churn months a batch of recomputed spells makes stale.
CREATE FUNCTION crm_kpi.queue_spell_effects(ids bigint[]) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    WITH old AS (SELECT * FROM crm_kpi.customer_spells WHERE customer_id = ANY(ids)),
    fresh AS (SELECT * FROM crm_kpi.staged_customer_spells),
    changed AS (SELECT c.customer_id FROM crm_kpi.changed_spells(ids) c),
    -- months whose start lies in the activity of one version only (customers active at the start)
    activity AS (
        SELECT v.customer_id,
               coalesce(range_agg(tstzrange(v.started_at, v.ended_at, '(]')) FILTER (WHERE v.is_old), '{}') AS before,
               coalesce(range_agg(tstzrange(v.started_at, v.ended_at, '(]')) FILTER (WHERE NOT v.is_old), '{}') AS after
        FROM (SELECT o.*, true AS is_old FROM old o UNION ALL SELECT f.*, false FROM fresh f) v
        WHERE v.customer_id IN (SELECT customer_id FROM changed)
        GROUP BY v.customer_id),
    shifted AS (SELECT r FROM activity, unnest((before - after) + (after - before)) r),
    months AS (
        SELECT g::date AS month
        FROM shifted, generate_series(date_trunc('month', lower(r) AT TIME ZONE st.timezone),
                                      date_trunc('month', least(upper(r), st.as_of) AT TIME ZONE st.timezone),
                                      interval '1 month') g
        WHERE (g::timestamp AT TIME ZONE st.timezone) <@ r
        UNION
        -- months of acquisitions and reactivations that differ
        SELECT date_trunc('month', x.started_at AT TIME ZONE st.timezone)::date
        FROM ((SELECT customer_id, started_at, spell = 1 FROM old EXCEPT SELECT customer_id, started_at, spell = 1 FROM fresh)
              UNION ALL
              (SELECT customer_id, started_at, spell = 1 FROM fresh EXCEPT SELECT customer_id, started_at, spell = 1 FROM old))
             AS x (customer_id, started_at, first)
        UNION
        -- months of churns (that happened) that differ
        SELECT date_trunc('month', x.ended_at AT TIME ZONE st.timezone)::date
        FROM ((SELECT customer_id, ended_at FROM old EXCEPT SELECT customer_id, ended_at FROM fresh)
              UNION ALL
              (SELECT customer_id, ended_at FROM fresh EXCEPT SELECT customer_id, ended_at FROM old)) AS x (customer_id, ended_at)
        WHERE x.ended_at <= st.as_of)
    INSERT INTO crm_kpi.change_queue (target, day) SELECT 'churn', month FROM months;
END $$;
COMMENT ON FUNCTION crm_kpi.queue_spell_effects(bigint[]) IS
    'Queues the churn months that the staged fresh spells of some customers change: months they start in, churn in, or are active at the start of in one version only';

-- Time passing: stages that change with time alone, churns that happened, a new month.
CREATE FUNCTION crm_kpi.advance_time(new_as_of timestamptz) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    IF st.built_at IS NULL OR new_as_of <= st.as_of THEN
        RETURN;
    END IF;
    INSERT INTO crm_kpi.change_queue (target, customer_id)
    SELECT 'customer', s.customer_id FROM crm_kpi.customer_stats s WHERE s.stage_until <= new_as_of;
    INSERT INTO crm_kpi.change_queue (target, day)
    SELECT DISTINCT 'churn', date_trunc('month', p.ended_at AT TIME ZONE st.timezone)::date
    FROM crm_kpi.customer_spells p WHERE p.ended_at > st.as_of AND p.ended_at <= new_as_of
    UNION
    SELECT 'churn', g::date
    FROM generate_series(date_trunc('month', st.as_of AT TIME ZONE st.timezone) + interval '1 month',
                         date_trunc('month', new_as_of AT TIME ZONE st.timezone), interval '1 month') g;
    UPDATE crm_kpi.engine_state SET as_of = new_as_of;
END $$;
COMMENT ON FUNCTION crm_kpi.advance_time(timestamptz) IS
    'Moves engine_state.as_of forward and queues what time alone changed: customers whose stage_until passed (index on it), months with churns that happened, months that began';

-- The failures of a run with those of one more family: each of its tables with the error.
CREATE FUNCTION crm_kpi.add_failure(failed jsonb, group_tables name[], errstate text, message text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN failed || (SELECT jsonb_object_agg(t, format('%s: %s', errstate, message)) FROM unnest(group_tables) t);
COMMENT ON FUNCTION crm_kpi.add_failure(jsonb, name[], text, text) IS
    'The failures of a refresh run (KPI table -> error) with each table of a family that failed added, its error written SQLSTATE: message';

-- Rebuild the KPI tables of the kinds whose rebuild is queued (target * followed by the kind): each group of tables
-- (crm_kpi.kind_tables) in a subtransaction of its own, so that one broken binding does not hold the others back.
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

-- One batch: up to crm_kpi.refresh_batch_size customers, or else as many days and months of each family. Returns the
-- keys taken. Each family runs in a subtransaction: one that fails (its tables and error go into failed) leaves its
-- keys queued and writes nothing, and the tables in failed are left alone for the rest of the run.
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
    -- A family's keys are of the grain of its first table: a month table after day tables (service_months after
    -- service_daily) is recomputed for the months of the days taken.
    FOR g IN SELECT k.own_target, (array_agg(k.key_grain ORDER BY k.position))[1] AS key_grain,
                    array_agg(k.table_name ORDER BY k.position) AS group_tables
             FROM crm_kpi.kpi_tables k WHERE k.key_grain IN ('day', 'month')
             GROUP BY k.own_target ORDER BY min(k.position) LOOP
        CONTINUE WHEN failed ?| g.group_tables::text[];
        part := tables;
        BEGIN
            WITH picked AS (SELECT DISTINCT q.day FROM crm_kpi.change_queue q
                            WHERE q.target = g.own_target AND q.day IS NOT NULL LIMIT n),
            taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                      WHERE q.target = g.own_target AND q.day = p.day RETURNING q.day)
            SELECT array_agg(DISTINCT taken.day) INTO days FROM taken;
            IF days IS NOT NULL THEN
                FOR t IN SELECT k.table_name, k.stage_function, k.key_grain,
                                CASE WHEN k.key_grain = g.key_grain THEN days
                                     ELSE ARRAY(SELECT DISTINCT date_trunc('month', d::timestamp)::date
                                                FROM unnest(days) d) END AS table_keys
                         FROM crm_kpi.kpi_tables k
                         WHERE k.table_name = ANY(g.group_tables) ORDER BY k.position LOOP
                    PERFORM crm_kpi.report_activity(format('%s, %s %s (%s keys still queued)', t.table_name,
                                                           cardinality(t.table_keys), t.key_grain || 's',
                                                           (SELECT count(*) FROM crm_kpi.change_queue)));
                    PERFORM crm_kpi.stage_fresh(t.table_name, t.table_keys, t.stage_function);
                    rows := crm_kpi.apply_fresh(t.table_name, t.table_keys);
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

-- Adopt settings for a rebuild; returns whether the time zone changed.
CREATE FUNCTION crm_kpi.adopt_settings(wanted crm_kpi.engine_state) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_timezone text := (SELECT timezone FROM crm_kpi.engine_state);
BEGIN
    UPDATE crm_kpi.engine_state SET
        timezone = wanted.timezone, active_window = wanted.active_window, churn_after = wanted.churn_after,
        loyal_min_tenure = wanted.loyal_min_tenure, loyal_min_orders = wanted.loyal_min_orders,
        resolution_sla = wanted.resolution_sla;
    RETURN old_timezone IS DISTINCT FROM wanted.timezone;
END $$;
COMMENT ON FUNCTION crm_kpi.adopt_settings(crm_kpi.engine_state) IS
    'Copies the time zone, lifecycle and SLA settings of a rebuild (crm_kpi.wanted_settings) into engine_state; true when the time zone changed';

-- The work of refresh() and rebuild(), under the tables' own settings; records the run.
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

CREATE FUNCTION crm_kpi.refresh(max_batches integer DEFAULT NULL) RETURNS crm_kpi.refresh_history
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

CREATE FUNCTION crm_kpi.rebuild(concurrently boolean DEFAULT true) RETURNS crm_kpi.refresh_history
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
